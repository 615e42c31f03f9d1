// A tiny client-side router: every path is rendered here, the server only has to send
// index.html for unknown paths without an extension (AnyGate's SPA fallback).
const routes = [
  [/^\/$/, () => "<h1>Home</h1><p>Served by AnyGate from examples/spa/dist.</p>"],
  [/^\/users\/(\d+)$/, (id) => `<h1>User ${id}</h1><p id="hello">…</p>`],
  [/^\/about$/, () => "<h1>About</h1><p>Deep links work: reload this page.</p>"],
];

function render() {
  const path = location.pathname;
  const app = document.getElementById("app");
  for (const [re, view] of routes) {
    const m = path.match(re);
    if (m) {
      app.innerHTML = view(...m.slice(1));
      if (document.getElementById("hello")) {
        fetch("/api/hello")
          .then((r) => r.json())
          .then((j) => (document.getElementById("hello").textContent = `hello, ${j.hello}`));
      }
      return;
    }
  }
  app.innerHTML = "<h1>Not found</h1>";
}

document.addEventListener("click", (e) => {
  const a = e.target.closest("a");
  if (a && a.origin === location.origin) {
    e.preventDefault();
    history.pushState(null, "", a.pathname);
    render();
  }
});
window.addEventListener("popstate", render);
render();
