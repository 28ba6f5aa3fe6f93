// What a connected cluster adds to updateSessionState on the local path (issue 12 target:
// ratio ≤ 1.2). One process, 1,000 sessions registered with stand-in sockets, every one of them
// claimed while the cluster is connected, so the state mirror runs and writes to a real
// redis-server (started here on a free loopback port) meanwhile.
//
//   node --expose-gc bench/cluster-update.mjs [--rounds 6] [--sessions 1000] [--mirror-ms 250]
//
// Rounds alternate the sides; each side keeps its lowest median (noise from other processes
// only adds time). The ratio is a time ratio: with ÷ without.

import { createRequire } from 'node:module'
import os from 'node:os'
import { measure, do_not_optimize } from 'mitata'

import { redisAvailable, startRedis, REDIS_INSTALL } from '../__test__/support/redis.mjs'

const R = createRequire(import.meta.url)('..')
const arg = (name, fallback) => {
  const i = process.argv.indexOf(name)
  return i < 0 ? fallback : Number(process.argv[i + 1])
}
const ROUNDS = arg('--rounds', 6)
const N = arg('--sessions', 1000)
const MIRROR_MS = arg('--mirror-ms', undefined)

if (!redisAvailable) {
  console.log(`skipped: ${REDIS_INSTALL}`)
  process.exit(0)
}

const ids = Array.from({ length: N }, (_, i) => `bench-${i}`)
const updates = [{ isConnected: true, note: 'a' }, { isConnected: false, note: 'b' }]
const sink = (v) => do_not_optimize(v)
const standIn = () => ({ end () {} })

function registerAll () {
  for (const id of ids) R.registerSocket(id, standIn(), { track: false })
}

async function median () {
  // A fresh closure per measurement: no call site shared between the two sides.
  // eslint-disable-next-line no-new-func
  const body = new Function('R', 'ids', 'updates', 'sink', 'N', 'let i = 0; return () => sink(R.updateSessionState(ids[i++ % N], updates[i & 1]))')
  const f = body(R, ids, updates, sink, N)
  globalThis.gc?.()
  const stats = await measure(f, { min_cpu_time: 300e6 })
  return stats.p50
}

const redis = await startRedis()
// `idle`: connected and holding every session, its mirror scan set to an hour, so only what the
// connection itself adds to the call shows; `mirroring`: the mirror at its interval, writing
// the changed states to Redis while the calls run (what a bot gets; on a loaded machine the
// mirror's and redis-server's CPU time is taken from the measured thread).
const SIDES = process.env.SIDES ? process.env.SIDES.split(',') : ['without', 'idle', 'mirroring']
const best = { without: Infinity, idle: Infinity, mirroring: Infinity }
let mirrored = null
let prefix = 0
try {
  for (let round = 0; round < ROUNDS; round++) {
    // Each round starts with another side: the first measurement after a change of side pays more.
    for (const side of [...SIDES.slice(round % SIDES.length), ...SIDES.slice(0, round % SIDES.length)]) {
      let cluster = null
      if (side !== 'without') {
        const mirrorFlushMs = side === 'idle' ? 3600000 : MIRROR_MS
        cluster = await R.connectCluster({ url: redis.url, nodeId: 'bench', prefix: `bench${prefix++}`, dataLossGraceMs: 0, mirrorFlushMs })
        await Promise.all(ids.map((id) => cluster.claim(id)))
      }
      registerAll()
      best[side] = Math.min(best[side], await median())
      if (side === 'mirroring') {
        await new Promise((resolve) => setTimeout(resolve, Math.max(250, 2 * (MIRROR_MS ?? 250))))
        mirrored = await cluster.whereIs(ids[0])
      }
      await cluster?.close()
      R.clearAll()
    }
  }
} finally {
  await redis.stop()
}

const ns = (v) => `${v.toFixed(1)} ns`
const ratio = (side) => best[side] / best.without
const verdict = (r) => `${r.toFixed(2)} (target ≤ 1.2: ${r <= 1.2 ? 'PASS' : 'MISS'})`
console.log(`updateSessionState (2 keys), ${N} sessions, best median of ${ROUNDS} rounds, mirrorFlushMs ${MIRROR_MS ?? 'default (250)'}`)
console.log(`  without a cluster                          ${ns(best.without)}`)
console.log(`  cluster connected, all held, mirror idle   ${ns(best.idle)}   ratio ${verdict(ratio('idle'))}`)
console.log(`  cluster connected, all held, mirroring     ${ns(best.mirroring)}   ratio ${verdict(ratio('mirroring'))}`)
console.log(`  mirror check: ${ids[0]} in Redis has note=${JSON.stringify(mirrored?.state?.note)}, isConnected=${mirrored?.state?.isConnected}`)
console.log(`  load average ${os.loadavg().map((l) => l.toFixed(2)).join(' ')} on ${os.cpus().length} cores`)
