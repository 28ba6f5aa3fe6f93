// Cluster nodes as real, separate Node processes (each one __test__/fixtures/cluster-node.mjs,
// with its own registry, cluster connection and Baileys sockets), driven over IPC.
//
//   const node = await startNode({ nodeId: 'a', waBase: server.url().split('?')[0] })
//   await node.call('connect', { options: { url: redis.url, leaseMs: 2000 } })
//   const { token, t } = await node.call('claim', { id: 'user_1' })
//   node.kill()                      // kill -9; resolves with the monotonic time of its exit
//
// `now()` here and `t` in the replies read the same clock (CLOCK_MONOTONIC on Linux).
// Every child is killed when this process exits, even after a failed test.

import { fork } from 'node:child_process'
import { readFileSync, existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

const FIXTURE = fileURLToPath(new URL('../fixtures/cluster-node.mjs', import.meta.url))

/** Milliseconds on the machine-wide monotonic clock the nodes use too. */
export const now = () => Number(process.hrtime.bigint()) / 1e6

const live = new Set()
process.on('exit', () => {
  for (const child of live) {
    try { child.kill('SIGKILL') } catch {}
  }
})

/** A node's failure as an Error with the child's `code` and `owner`. */
function remoteError (op, e) {
  const err = new Error(`${op}: ${e.message}`)
  err.code = e.code
  err.owner = e.owner
  err.remoteName = e.name
  return err
}

class ClusterNode {
  constructor (child, nodeId) {
    this.child = child
    this.nodeId = nodeId
    this.pid = child.pid
    this.events = [] // pushed { event, ... } messages, in arrival order
    this.listeners = new Set()
    this.stderr = ''
    this.exitedAt = null
    this._rid = 0
    this._pending = new Map()
    this.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        this.exitedAt = now()
        live.delete(child)
        for (const { reject, timer } of this._pending.values()) {
          clearTimeout(timer)
          reject(new Error(`node ${nodeId} exited (${signal ?? code}) with a request pending; stderr: ${this.stderr.slice(-2000)}`))
        }
        this._pending.clear()
        resolve({ code, signal, at: this.exitedAt })
      })
    })
    child.stderr?.on('data', (d) => { this.stderr += d })
    child.on('message', (msg) => {
      if (msg?.rid !== undefined) {
        const p = this._pending.get(msg.rid)
        if (!p) return
        this._pending.delete(msg.rid)
        clearTimeout(p.timer)
        if (msg.ok) p.resolve(msg.value)
        else p.reject(remoteError(p.op, msg.error))
      } else if (msg?.event) {
        this.events.push(msg)
        for (const fn of this.listeners) fn(msg)
      }
    })
  }

  get alive () { return this.exitedAt === null }

  /** One request; rejects with the node's error (its `code`, `owner`) or after timeoutMs. */
  call (op, args = {}, timeoutMs = 20000) {
    if (!this.alive) return Promise.reject(new Error(`node ${this.nodeId} is not running (${op})`))
    const rid = ++this._rid
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this._pending.delete(rid)
        reject(new Error(`node ${this.nodeId}: no answer to ${op} within ${timeoutMs} ms`))
      }, timeoutMs)
      this._pending.set(rid, { resolve, reject, timer, op })
      try {
        this.child.send({ ...args, rid, op })
      } catch (err) {
        clearTimeout(timer)
        this._pending.delete(rid)
        reject(err)
      }
    })
  }

  /** Settles like call(), as { ok, value } | { ok: false, error } (never rejects). */
  settle (op, args, timeoutMs) {
    return this.call(op, args, timeoutMs).then((value) => ({ ok: true, value }), (error) => ({ ok: false, error }))
  }

  /** Calls fn for every pushed event from now on; returns the unsubscribe function. */
  onEvent (fn) {
    this.listeners.add(fn)
    return () => this.listeners.delete(fn)
  }

  /** Sends a signal (default SIGKILL); with SIGKILL resolves with the exit's monotonic time. */
  async kill (signal = 'SIGKILL') {
    if (!this.alive) return this.exitedAt
    try { this.child.kill(signal) } catch {}
    if (signal !== 'SIGKILL') return null
    return (await this.exited).at
  }

  /** A clean stop: close the cluster (if connected), then exit; kill -9 when it does not. */
  async stop (timeoutMs = 10000) {
    if (!this.alive) return
    await this.call('close', {}, timeoutMs).catch(() => {})
    await this.call('exit', {}, 2000).catch(() => {})
    const timer = setTimeout(() => this.kill(), timeoutMs)
    await this.exited
    clearTimeout(timer)
  }
}

/**
 * Forks a node process and initialises it.
 * @param {{ nodeId: string, waBase: string, logFile?: string, build?: string }} options
 *   waBase: the wa-server URL without its query (ws://127.0.0.1:PORT/ws/chat).
 */
export async function startNode ({ nodeId, waBase, logFile, build = '7.0.0-rc14', env } = {}) {
  const child = fork(FIXTURE, [], {
    stdio: ['ignore', 'inherit', 'pipe', 'ipc'],
    env: { ...process.env, ...env }
  })
  live.add(child)
  const node = new ClusterNode(child, nodeId)
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`node ${nodeId} did not start; stderr: ${node.stderr}`)), 20000)
    child.once('message', () => { clearTimeout(timer); resolve() })
    child.once('exit', () => { clearTimeout(timer); reject(new Error(`node ${nodeId} exited at start; stderr: ${node.stderr}`)) })
  })
  await node.call('init', { nodeId, waBase, logFile, build })
  return node
}

/** The interval edges of a log file written by nodes ({ edge, id, token, node, pid, t }). */
export function readLog (file) {
  if (!existsSync(file)) return []
  return readFileSync(file, 'utf8').split('\n').filter(Boolean).map((line) => JSON.parse(line))
}

/**
 * Ownership intervals from log edges: [{ id, token, node, pid, start, end, why }]. An interval
 * still open for a process that was killed ends at `deaths[pid]` (its exit, seen by the
 * parent: no later than the moment its sockets closed). Any other open one has end = null.
 */
export function intervalsOf (edges, deaths = {}) {
  const open = new Map()
  const out = []
  for (const e of edges) {
    const key = `${e.pid}|${e.id}|${e.token}`
    if (e.edge !== 'start' && e.edge !== 'end') continue
    if (e.edge === 'start') {
      const iv = { id: e.id, token: e.token, node: e.node, pid: e.pid, start: e.t, end: null, why: null }
      open.set(key, iv)
      out.push(iv)
    } else {
      const iv = open.get(key)
      if (iv) {
        iv.end = e.t
        iv.why = e.why
        open.delete(key)
      }
    }
  }
  for (const iv of open.values()) {
    if (deaths[iv.pid] !== undefined) {
      iv.end = deaths[iv.pid]
      iv.why = 'killed'
    }
  }
  return out
}

/**
 * Problems with a set of intervals: for each id, sorted by start, each must end before the next
 * starts and tokens must grow. Returns a list of readable problems (empty: all good).
 */
export function overlapProblems (intervals) {
  const byId = new Map()
  for (const iv of intervals) {
    if (!byId.has(iv.id)) byId.set(iv.id, [])
    byId.get(iv.id).push(iv)
  }
  const problems = []
  for (const [id, list] of byId) {
    list.sort((a, b) => a.start - b.start)
    for (let i = 0; i < list.length; i++) {
      const a = list[i]
      if (a.end === null) {
        if (i < list.length - 1) problems.push(`${id}: ${a.node}#${a.token} never ended, yet ${list[i + 1].node}#${list[i + 1].token} started`)
        continue
      }
      if (i === list.length - 1) continue
      const b = list[i + 1]
      if (a.end > b.start) {
        problems.push(`${id}: ${a.node}#${a.token} (${a.why}) ran until ${a.end.toFixed(1)}, ${(a.end - b.start).toFixed(1)} ms after ${b.node}#${b.token} started at ${b.start.toFixed(1)}`)
      }
      if (!(BigInt(b.token) > BigInt(a.token))) problems.push(`${id}: token ${b.token} (${b.node}) does not grow past ${a.token} (${a.node})`)
    }
  }
  return problems
}

/**
 * Live connections per session id on a wa-server, from its connect/disconnect events:
 * `max[id]` is the most that were ever open at once, `live(id)` the current ones (with
 * their `node` param).
 */
export function watchWaServer (server) {
  const conns = new Map() // seq -> { id, node, at }
  const counts = new Map()
  const max = {}
  const history = [] // { id, node, kind, at, count }
  const onConnect = (info) => {
    const id = info.id
    conns.set(info.seq, { id, node: info.params?.node, at: now() })
    const n = (counts.get(id) ?? 0) + 1
    counts.set(id, n)
    max[id] = Math.max(max[id] ?? 0, n)
    history.push({ id, node: info.params?.node, kind: 'connect', at: now(), count: n })
  }
  const onDisconnect = (info) => {
    const c = conns.get(info.seq)
    if (!c) return
    conns.delete(info.seq)
    const n = counts.get(c.id) - 1
    counts.set(c.id, n)
    history.push({ id: c.id, node: c.node, kind: 'disconnect', at: now(), count: n })
  }
  server.on('connect', onConnect)
  server.on('disconnect', onDisconnect)
  return {
    max,
    history,
    live: (id) => [...conns.values()].filter((c) => c.id === id),
    count: (id) => counts.get(id) ?? 0,
    stop () {
      server.off('connect', onConnect)
      server.off('disconnect', onDisconnect)
    }
  }
}
