// Express 5 on Node's http server: `node app.js`.
//
// Routing is Express's default: case-insensitive, non-strict (a trailing
// slash is optional), matched against the path as sent (not percent-decoded).
// Node joins repeated headers (other than a few like set-cookie) with ", ".
//
// Every handler answers 200 with a JSON description of the request as
// Express saw it (see ../common.py for the shape), also base64-encoded in
// the X-Upstream-Saw response header so a HEAD request is observable.
// Prints `PORT <n>` on stdout once it listens on a free loopback port.
"use strict";

const express = require("express");

const FRAMEWORK = "express/node";
const IDENTITY = ["x-tollgate-sub", "x-tollgate-scope", "x-tollgate-sid", "x-tollgate-ver"];
const WATCHED = [...IDENTITY, "token-user"];
const fold = (name) => name.toLowerCase().replace(/_/g, "-");

function reads(req) {
  const out = [];
  for (const h of WATCHED) {
    const v = req.get(h);
    if (v !== undefined) out.push({ via: "req.get", header: h, value: v });
  }
  // Raw: every header line whose name folds to a watched one.
  for (let i = 0; i + 1 < req.rawHeaders.length; i += 2) {
    const n = req.rawHeaders[i];
    if (WATCHED.includes(fold(n))) {
      out.push({ via: `rawHeaders[${n}]`, header: fold(n), value: req.rawHeaders[i + 1] });
    }
  }
  return out;
}

function answer(handler, status = 200) {
  return (req, res) => {
    const d = {
      framework: FRAMEWORK,
      handler,
      status,
      method: req.method,
      path: req.path,
      raw_path: req.originalUrl,
      reads: reads(req),
    };
    const json = JSON.stringify(d);
    res.status(status);
    res.set("X-Upstream-Saw", Buffer.from(json).toString("base64url"));
    res.type("application/json").send(json);
  };
}

const app = express();
app.get("/admin", answer("admin"));
app.get("/admin/users", answer("admin"));
for (const path of ["/api/notes", "/api/notes/:note"]) {
  app.route(path)
    .get(answer("read"))
    .post(answer("write"))
    .put(answer("write"))
    .patch(answer("write"))
    .delete(answer("write"));
}
app.get("/public/*rest", answer("public"));
app.use(answer("none", 404));
// Errors (a malformed percent-encoding in a parameter, ...): no handler.
app.use((err, req, res, next) => answer("none", err.status || 500)(req, res));

const server = app.listen(0, "127.0.0.1", () => {
  process.stdout.write(`PORT ${server.address().port}\n`);
});
