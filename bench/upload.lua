-- wrk script: POST a 100 MiB body per request (the upload-100m scenario).
wrk.method = "POST"
wrk.body = string.rep("x", 100 * 1024 * 1024)
