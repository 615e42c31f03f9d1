/*
 * The C reference of SPEC §11: a minimal single-threaded epoll HTTP/1.1 server that
 * answers every request with the same empty 200, pipelining included. It does no parsing
 * beyond finding the end of each request head, so it is a floor, not a competitor: the
 * cost left is the kernel's.
 *
 *   cc -O2 -o c-reference server.c && ./c-reference 127.0.0.1 8090
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF 65536
static const char RESP[] =
    "HTTP/1.1 200 OK\r\ncontent-length: 0\r\ndate: Sun, 22 Nov 2026 00:00:00 GMT\r\n"
    "x-request-id: 00000000000000000000000000000000\r\n\r\n";

struct conn { int fd; size_t len; char in[BUF]; char out[BUF * 2]; };

int main(int argc, char **argv) {
    if (argc != 3) { fprintf(stderr, "usage: %s ADDR PORT\n", argv[0]); return 2; }
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(atoi(argv[2])) };
    inet_pton(AF_INET, argv[1], &a.sin_addr);
    if (bind(ls, (struct sockaddr *)&a, sizeof a) || listen(ls, 4096)) { perror("bind"); return 1; }
    int ep = epoll_create1(0);
    struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL }, evs[256];
    epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
    for (;;) {
        int n = epoll_wait(ep, evs, 256, -1);
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            if (!c) {
                int fd;
                while ((fd = accept4(ls, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    c = calloc(1, sizeof *c);
                    c->fd = fd;
                    struct epoll_event ce = { .events = EPOLLIN, .data.ptr = c };
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ce);
                }
                continue;
            }
            ssize_t r = read(c->fd, c->in + c->len, BUF - c->len);
            if (r <= 0) {
                if (r < 0 && errno == EAGAIN) continue;
                close(c->fd); free(c); continue;
            }
            c->len += r;
            size_t out = 0, start = 0;
            for (size_t j = 3; j < c->len; j++) {
                if (c->in[j] == '\n' && c->in[j - 1] == '\r' && c->in[j - 2] == '\n' && c->in[j - 3] == '\r') {
                    memcpy(c->out + out, RESP, sizeof RESP - 1);
                    out += sizeof RESP - 1;
                    start = j + 1;
                }
            }
            memmove(c->in, c->in + start, c->len - start);
            c->len -= start;
            if (out && write(c->fd, c->out, out) < 0) { close(c->fd); free(c); }
        }
    }
}
