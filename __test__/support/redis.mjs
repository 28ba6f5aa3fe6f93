// A real redis-server per test, on a free loopback port, started and stopped by the test.
//
//   import { redisSkip, startRedis } from './support/redis.mjs'
//   test('...', { skip: redisSkip }, async (t) => {
//     const redis = await startRedis()            // { port, url, pid, stop, kill, restart, pause, resume }
//     t.after(() => redis.stop())
//   })
//
// Options: `port` (default: a free one), `args` (extra redis-server arguments, e.g.
// ['--requirepass', 'pw']), `persist` (append-only file fsynced on every write, so a
// restart keeps everything; default off: a restart comes back empty).

import { spawn, spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer, connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

/** The one command that installs Redis, for skip messages. */
export const REDIS_INSTALL = 'install redis-server: apt-get install -y redis-server'

/** Whether a `redis-server` binary runs here. */
export const redisAvailable = (() => {
  try {
    const r = spawnSync('redis-server', ['--version'], { stdio: 'ignore', timeout: 10000 })
    return r.status === 0
  } catch {
    return false
  }
})()

/** For `test(name, { skip: redisSkip }, ...)`: false, or the install message. */
export const redisSkip = redisAvailable ? false : REDIS_INSTALL

/** A free loopback TCP port (bound then released). */
export function freePort () {
  return new Promise((resolve, reject) => {
    const srv = createServer()
    srv.unref()
    srv.on('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address()
      srv.close(() => resolve(port))
    })
  })
}

// Every server this process started, killed on exit even if a test forgot or failed.
const live = new Set()
process.on('exit', () => {
  for (const child of live) {
    try { child.kill('SIGKILL') } catch {}
  }
})

/** Sends PING (after AUTH when a password is set) and resolves true on PONG. */
function ping (port, password, timeoutMs = 500) {
  return new Promise((resolve) => {
    let got = ''
    let done = false
    const finish = (ok) => {
      if (done) return
      done = true
      clearTimeout(timer)
      sock.destroy()
      resolve(ok)
    }
    const sock = connect({ host: '127.0.0.1', port })
    const timer = setTimeout(() => finish(false), timeoutMs)
    timer.unref()
    sock.on('error', () => finish(false))
    sock.on('close', () => finish(false))
    sock.on('connect', () => {
      sock.write(password == null ? 'PING\r\n' : `AUTH ${password}\r\nPING\r\n`)
    })
    sock.on('data', (d) => {
      got += d.toString('latin1')
      if (got.includes('PONG')) finish(true)
      else if (got.includes('-ERR') || got.includes('-WRONGPASS')) finish(false)
    })
  })
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

/**
 * Starts redis-server on 127.0.0.1 and resolves once it answers PING.
 * @param {{ port?: number, args?: string[], persist?: boolean, startTimeoutMs?: number }} [options]
 * @returns {Promise<{ port: number, url: string, pid: number, dir: string,
 *   stop(): Promise<void>, kill(signal?: NodeJS.Signals): void, restart(): Promise<void>,
 *   pause(): void, resume(): void }>}
 */
export async function startRedis (options = {}) {
  if (!redisAvailable) throw new Error(REDIS_INSTALL)
  const port = options.port ?? await freePort()
  const extra = options.args ?? []
  const pwAt = extra.indexOf('--requirepass')
  const password = pwAt >= 0 ? extra[pwAt + 1] : undefined
  const startTimeoutMs = options.startTimeoutMs ?? 10000
  const dir = mkdtempSync(join(tmpdir(), 'bsr-redis-'))
  const persistence = options.persist
    ? ['--appendonly', 'yes', '--appendfsync', 'always']
    : ['--appendonly', 'no']
  let child = null
  let exited = null
  let stopped = false

  async function launch () {
    const args = ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', ...persistence, ...extra]
    child = spawn('redis-server', args, { stdio: ['ignore', 'ignore', 'pipe'] })
    let stderr = ''
    child.stderr.on('data', (d) => { stderr += d })
    const me = child
    live.add(me)
    exited = new Promise((resolve) => {
      me.on('exit', () => { live.delete(me); resolve() })
      me.on('error', () => { live.delete(me); resolve() })
    })
    const deadline = Date.now() + startTimeoutMs
    while (Date.now() < deadline) {
      if (me.exitCode !== null || me.signalCode !== null) break
      if (await ping(port, password)) {
        me.stderr.destroy()
        return
      }
      await sleep(20)
    }
    try { me.kill('SIGKILL') } catch {}
    throw new Error(`redis-server on port ${port} did not start: ${stderr.trim()}`)
  }

  /** Kills the running server (SIGKILL) and waits until it is gone. */
  async function killHard () {
    if (!child) return
    const me = child
    child = null
    try { me.kill('SIGCONT') } catch {}
    try { me.kill('SIGKILL') } catch {}
    await exited
  }

  await launch()
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    dir,
    get pid () { return child?.pid },
    /** Kills the server and removes its directory; safe to call twice. */
    async stop () {
      if (stopped) return
      stopped = true
      await killHard()
      rmSync(dir, { recursive: true, force: true })
    },
    /** Sends a signal (default SIGKILL) to the running server. SIGKILL leaves it dead until restart(). */
    kill (signal = 'SIGKILL') {
      if (!child) return
      try { child.kill(signal) } catch {}
    },
    /** `kill -9` (if still running), then start again on the same port and directory. */
    async restart () {
      if (stopped) throw new Error('restart() after stop()')
      await killHard()
      await launch()
    },
    /** SIGSTOP: the server keeps its sockets open and answers nothing. */
    pause () { this.kill('SIGSTOP') },
    /** SIGCONT. */
    resume () { this.kill('SIGCONT') }
  }
}
