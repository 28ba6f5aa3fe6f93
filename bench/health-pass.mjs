// What one health pass costs (the health pass in index.js): `node bench/health-pass.mjs [sessions] [open|connecting]`.
//
// The pass runs from an unref'd setInterval; here its callback is captured from setInterval
// and called directly, 60 times, on N registered sockets. The sockets are plain objects
// shaped like Baileys' (ws getters written as in its WebSocketClient), tracked through a
// stand-in `ev` so that their status can be set to `open` (a pass reads the ws of open and qr
// sessions only); 10,000 real Baileys sockets would measure Baileys, not the pass.

import { createRequire } from 'node:module'

const N = Number(process.argv[2] ?? 10000)
const status = process.argv[3] ?? 'open'

let pass
const realSetInterval = globalThis.setInterval
globalThis.setInterval = (fn) => {
  pass = fn
  return realSetInterval(() => {}, 2 ** 30).unref()
}
const registry = createRequire(import.meta.url)('..')

class WebSocketClientLike {
  constructor () { this.socket = { readyState: 1 } }
  get isOpen () { return this.socket?.readyState === 1 }
  get isClosed () { return this.socket === null || this.socket?.readyState === 3 }
  get isClosing () { return this.socket === null || this.socket?.readyState === 2 }
}

for (let i = 0; i < N; i++) {
  const onUpdate = []
  const sock = {
    ev: { on (event, fn) { if (event === 'connection.update') onUpdate.push(fn) }, off () {} },
    ws: new WebSocketClientLike(),
    end () {}
  }
  registry.registerSocket(`s${i}`, sock)
  if (status === 'open') for (const fn of onUpdate) fn({ connection: 'open' })
}
globalThis.setInterval = realSetInterval
if (typeof pass !== 'function') throw new Error('the health pass did not start')

const times = []
for (let r = 0; r < 60; r++) {
  const t0 = process.hrtime.bigint()
  pass()
  times.push(Number(process.hrtime.bigint() - t0) / 1e6)
}
times.sort((a, b) => a - b)
const pct = (p) => times[Math.min(times.length - 1, Math.floor(p * times.length))].toFixed(2)
console.log(`${N} sessions, ${registry.getStats().byStatus[status]} ${status}: one pass median ${pct(0.5)} ms (min ${pct(0)}, p90 ${pct(0.9)})`)
registry.clearAll()
