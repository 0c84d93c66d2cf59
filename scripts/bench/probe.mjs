// Times the core's request path compiled to Wasm (bench/wasm-probe) in
// Node's V8: node scripts/bench/probe.mjs target/wasm-probe/.../tollgate_wasm_probe.wasm
// Prints one JSON line: ns per call for each piece, best of 5 batches.
import { readFileSync } from "node:fs";
const bytes = readFileSync(process.argv[2]);
const { instance } = await WebAssembly.instantiate(bytes, {});
const e = instance.exports;
const tokenBytes = e.setup();
const out = { token_bytes: tokenBytes, node: process.version };
for (const piece of ["hmac", "claims_parse", "verify", "decide"]) {
  const f = e[`run_${piece}`];
  f(20000); // warm-up: let V8 tier up
  let best = Infinity;
  for (let b = 0; b < 5; b++) {
    const n = 20000;
    const t0 = process.hrtime.bigint();
    const ok = f(n);
    const dt = Number(process.hrtime.bigint() - t0);
    if (ok !== n) throw new Error(`${piece}: ${ok} of ${n} succeeded`);
    best = Math.min(best, dt / n);
  }
  out[`${piece}_ns`] = Math.round(best);
}
console.log(JSON.stringify(out));
