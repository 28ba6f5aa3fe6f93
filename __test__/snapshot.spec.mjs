// Snapshots (issue 4): saveSnapshot / loadSnapshot round trip with real Baileys 7 sockets,
// no QR text ever written, owner-only atomic writes, and what happens when a write is
// interrupted on purpose or the file is bad.

import { test, before, after, afterEach } from 'node:test'
import assert from 'node:assert/strict'
import { createRequire } from 'node:module'
import { spawn, spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'

import { startWaServer } from './support/wa-server.mjs'
import { loadBaileys, makeTestSocket, waitForConnection } from './support/baileys.mjs'
import { until, sleep, SOCKET_OPTIONS } from './fixtures/threads-client.mjs'

const registry = createRequire(import.meta.url)('../index.js')
const {
  registerSocket, getSocket, getSocketCount, updateSessionState, getSessionState, getAllSessions,
  getStats, clearAll, onStateChange, waitForState, saveSnapshot, loadSnapshot
} = registry

const CHILD = fileURLToPath(new URL('./fixtures/snapshot-child.mjs', import.meta.url))
const SAVED_KEYS = ['sessionId', 'createdAt', 'lastActivity', 'isConnected', 'error', 'status', 'lastDisconnect',
  'me', 'connects', 'disconnects', 'connectedAt', 'disconnectedAt', 'lastInboundAt', 'lastOutboundAt',
  'messagesIn', 'messagesOut', 'custom']

let baileys
let server
const dirs = []
const cleanups = []

before(async () => {
  baileys = await loadBaileys(7)
  server = await startWaServer({ baileys })
})

afterEach(() => {
  for (const fn of cleanups.splice(0)) fn()
  clearAll()
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true })
})

after(async () => {
  clearAll()
  await server.close()
})

function tempDir () {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'bsr-snapshot-spec-'))
  dirs.push(d)
  return d
}

const connect = (id, mode = 'open', extra = {}) => makeTestSocket({ baileys, url: server.url(mode, { id }), ...SOCKET_OPTIONS, ...extra })

/**
 * A real socket registered with { track: false }, once it is open: ending a Baileys 7 socket
 * in the middle of its handshake leaves its 20 s handshake timer behind (end() removes the
 * ws 'close' listener that would cancel it), which would hold this process open.
 */
async function untrackedOpen (id) {
  const sock = connect(id)
  registerSocket(id, sock, { track: false })
  await waitForConnection(sock, 'open')
  return sock
}
const leftovers = (dir, keep) => fs.readdirSync(dir).filter((n) => !keep.includes(n))

/** getAllSessions() and this thread's sockets, to show that something changed nothing. */
function registryPicture () {
  return {
    sessions: getAllSessions(),
    sockets: [...registry.getAllSockets()],
    count: getSocketCount()
  }
}

function assertSameRegistry (before, what) {
  const now = registryPicture()
  assert.deepEqual(now.sessions, before.sessions, `${what}: sessions unchanged`)
  assert.equal(now.count, before.count, `${what}: socket count unchanged`)
  assert.equal(now.sockets.length, before.sockets.length)
  for (const [i, [id, sock]] of before.sockets.entries()) {
    assert.equal(now.sockets[i][0], id)
    assert.equal(now.sockets[i][1], sock, `${what}: the very same socket under ${id}`)
  }
}

function runChild (args, { shell } = {}) {
  const cmd = shell ? 'bash' : process.execPath
  const argv = shell ? ['-c', `${shell} && exec "$0" "$@"`, process.execPath, CHILD, ...args] : [CHILD, ...args]
  const child = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'], timeout: 20_000 })
  const out = { child, stdout: '', stderr: '', lines: [] }
  child.stdout.on('data', (d) => {
    out.stdout += d
    out.lines = out.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l))
  })
  child.stderr.on('data', (d) => { out.stderr += d })
  out.closed = new Promise((resolve) => child.once('close', (code, signal) => resolve({ code, signal })))
  return out
}

test('round trip: saveSnapshot writes the sessions, loadSnapshot gives them back', { skip: process.platform === 'win32' && 'checks POSIX file modes (0600: owner only), which Windows files do not have' }, async () => {
  const dir = tempDir()
  const file = path.join(dir, 'sessions.json')
  registerSocket('snap_open', connect('snap_open'))
  registerSocket('snap_401', connect('snap_401', 'fail401'))
  await untrackedOpen('snap_untracked')
  await waitForState('snap_open', 'open', { timeoutMs: 5000 })
  await waitForState('snap_401', 'loggedOut', { timeoutMs: 5000 })
  const custom = { phone: '+15550001', tags: ['a', 'b'], nested: { n: 1, deep: { ok: true } }, count: 42, nothing: null }
  updateSessionState('snap_open', custom)
  updateSessionState('snap_untracked', { note: 'no tracking', isConnected: true, error: 'set by the bot' })
  // Freeze the tracked sockets' state: a late event must not differ between save and compare.
  await sleep(50)
  const states = getAllSessions()

  const t0 = Date.now()
  const info = await saveSnapshot(file)
  assert.deepEqual(Object.keys(info).sort(), ['path', 'savedAt', 'sessions'])
  assert.equal(info.path, file)
  assert.equal(info.sessions, 3)
  assert.ok(info.savedAt >= t0 && info.savedAt <= Date.now())

  assert.equal(fs.statSync(file).mode & 0o777, 0o600, 'readable by its owner only')
  assert.deepEqual(leftovers(dir, []), ['sessions.json'], 'no temporary file left')
  const raw = JSON.parse(fs.readFileSync(file, 'utf8'))
  assert.equal(raw.version, 1)
  assert.equal(raw.savedAt, info.savedAt)

  const loaded = await loadSnapshot(file)
  assert.ok(Array.isArray(loaded))
  assert.deepEqual(loaded.map((s) => s.sessionId), ['snap_open', 'snap_401', 'snap_untracked'], 'registration order')
  for (const saved of loaded) {
    assert.deepEqual(Object.keys(saved).sort(), [...SAVED_KEYS].sort(), `${saved.sessionId}: only data, no socket`)
    const s = states[saved.sessionId]
    for (const key of SAVED_KEYS.filter((k) => k !== 'sessionId' && k !== 'custom')) {
      assert.deepEqual(saved[key], s[key], `${saved.sessionId}.${key}`)
    }
  }
  const [open, loggedOut, untracked] = loaded
  assert.deepEqual(open.custom, custom, 'custom keys, nested values included')
  assert.equal(open.status, 'open')
  assert.equal(open.connects, 1)
  assert.match(open.me.id, /^1555\d+:1@s\.whatsapp\.net$/)
  assert.match(open.me.lid, /@lid$/)
  assert.equal(typeof open.connectedAt, 'number')
  assert.equal(loggedOut.status, 'loggedOut')
  assert.deepEqual({ code: loggedOut.lastDisconnect.code, reason: loggedOut.lastDisconnect.reason }, { code: 401, reason: 'loggedOut' })
  assert.equal(loggedOut.disconnects, 1)
  assert.deepEqual(untracked.custom, { note: 'no tracking' })
  assert.equal(untracked.status, null)
  assert.equal(untracked.isConnected, true)
  assert.equal(untracked.error, 'set by the bot')

  // Saving again replaces the file (also one that had looser permissions) in one piece.
  fs.chmodSync(file, 0o644)
  updateSessionState('snap_open', { count: 43 })
  assert.equal((await saveSnapshot(file)).sessions, 3)
  assert.equal(fs.statSync(file).mode & 0o777, 0o600)
  assert.equal((await loadSnapshot(file))[0].custom.count, 43)
  assert.deepEqual(leftovers(dir, []), ['sessions.json'])

  // Concurrent saves to one path: each resolves, the file is whole, nothing left over.
  const infos = await Promise.all([1, 2, 3, 4].map(() => saveSnapshot(file)))
  assert.deepEqual(infos.map((i) => i.sessions), [3, 3, 3, 3])
  assert.equal((await loadSnapshot(file)).length, 3)
  assert.deepEqual(leftovers(dir, []), ['sessions.json'])

  // An empty registry saves an empty list.
  clearAll()
  assert.equal((await saveSnapshot(file)).sessions, 0)
  assert.deepEqual(await loadSnapshot(file), [])
})

test('a file name near the file-system limit is written atomically too', { skip: process.platform === 'win32' && 'checks POSIX file modes (0600: owner only), which Windows files do not have' }, async () => {
  const dir = tempDir()
  // 250 bytes: a valid name, too long once a temporary prefix and suffix are added to it whole.
  const file = path.join(dir, `${'s'.repeat(245)}.json`)
  await untrackedOpen('snap_long_name')
  assert.equal((await saveSnapshot(file)).sessions, 1)
  assert.equal((await loadSnapshot(file))[0].sessionId, 'snap_long_name')
  assert.equal(fs.statSync(file).mode & 0o777, 0o600)
  assert.deepEqual(leftovers(dir, []), [path.basename(file)])
})

test('no QR text in the snapshot file or in getStats(), getAllSessions(), getSessionState()', async () => {
  const dir = tempDir()
  const file = path.join(dir, 'qr.json')
  const sock = connect('snap_qr', 'qr', { registered: false })
  registerSocket('snap_qr', sock)
  const { qr } = await waitForConnection(sock, 'qr')
  assert.equal(typeof qr, 'string')
  const state = await waitForState('snap_qr', 'qr', { timeoutMs: 5000 })
  assert.equal(state.hasQr, true)
  // The QR string is "ref,noiseKey,identityKey,advSecret": no part of it may leak.
  const secrets = [qr, ...qr.split(',').filter((p) => p.length >= 8)]
  assert.ok(secrets.length >= 4, `the QR has its parts: ${secrets.length}`)

  await saveSnapshot(file)
  const text = fs.readFileSync(file, 'utf8')
  assert.match(text, /"snap_qr"/, 'the session is in the file')
  const loaded = await loadSnapshot(file)
  assert.equal(loaded[0].status, 'qr')
  const views = {
    file: text,
    loaded: JSON.stringify(loaded),
    stats: JSON.stringify(getStats()),
    sessions: JSON.stringify(getAllSessions()),
    state: JSON.stringify(getSessionState('snap_qr'))
  }
  for (const [where, content] of Object.entries(views)) {
    for (const secret of secrets) assert.equal(content.includes(secret), false, `${where} contains QR text ${secret.slice(0, 12)}...`)
  }
})

test('loadSnapshot returns the saved sessions and changes nothing in the registry', async () => {
  const dir = tempDir()
  const file = path.join(dir, 'keep.json')
  registerSocket('keep_1', connect('keep_1'))
  await waitForState('keep_1', 'open', { timeoutMs: 5000 })
  updateSessionState('keep_1', { plan: 'restore me' })
  await saveSnapshot(file)
  clearAll()

  // Untracked, so no socket event moves its state while we compare.
  const other = await untrackedOpen('keep_2')
  updateSessionState('keep_2', { mine: true })
  const changes = []
  const unsubscribe = onStateChange((c) => changes.push(c))
  cleanups.push(unsubscribe)
  const before = registryPicture()

  const loaded = await loadSnapshot(file)
  assert.deepEqual(loaded.map((s) => [s.sessionId, s.status, s.custom.plan]), [['keep_1', 'open', 'restore me']])
  await sleep(30)
  assertSameRegistry(before, 'loadSnapshot')
  assert.equal(getSessionState('keep_1'), null, 'loading does not invent sessions')
  assert.equal(getSocket('keep_1'), null, 'nor sockets')
  assert.equal(getSocket('keep_2'), other)
  assert.equal(changes.length, 0, 'no events')
})

test('bad snapshot files reject with their codes and change nothing', async () => {
  const dir = tempDir()
  const good = path.join(dir, 'good.json')
  await untrackedOpen('bad_1')
  updateSessionState('bad_1', { payload: 'x'.repeat(2000) })
  await saveSnapshot(good)
  const bytes = fs.readFileSync(good)
  const json = JSON.parse(bytes)
  // The good file with `custom` replaced by raw JSON text (a JS object literal could not
  // even hold an own "__proto__" key).
  const withCustom = (raw) => JSON.stringify({ ...json, sessions: [{ ...json.sessions[0], custom: { MARK: 1 } }] })
    .replace('"MARK":1', raw)
  const before = registryPicture()

  const cases = [
    ['missing.json', null, 'ERR_SNAPSHOT_NOT_FOUND'],
    ['truncated.json', bytes.subarray(0, Math.floor(bytes.length / 2)), 'ERR_SNAPSHOT_CORRUPT'],
    ['truncated-last-byte.json', bytes.subarray(0, bytes.length - 2), 'ERR_SNAPSHOT_CORRUPT'],
    ['empty.json', Buffer.alloc(0), 'ERR_SNAPSHOT_CORRUPT'],
    ['garbage.json', Buffer.from([0x00, 0xff, 0x13, 0x37, 0x7b, 0x7b]), 'ERR_SNAPSHOT_CORRUPT'],
    ['array.json', '[]', 'ERR_SNAPSHOT_CORRUPT'],
    ['no-version.json', JSON.stringify({ ...json, version: undefined }), 'ERR_SNAPSHOT_CORRUPT'],
    ['no-sessions.json', JSON.stringify({ version: 1, savedAt: 1 }), 'ERR_SNAPSHOT_CORRUPT'],
    ['bad-session.json', JSON.stringify({ ...json, sessions: [{ sessionId: 5 }] }), 'ERR_SNAPSHOT_CORRUPT'],
    ['version-2.json', JSON.stringify({ ...json, version: 2 }), 'ERR_SNAPSHOT_VERSION'],
    ['version-0.json', JSON.stringify({ ...json, version: 0 }), 'ERR_SNAPSHOT_VERSION'],
    // Hand-made files with custom keys saveSnapshot can never write (updateSessionState
    // refuses them): a key that could reach a prototype, at any depth, or a registry-only key.
    ['proto.json', withCustom('"__proto__":{"polluted":true}'), 'ERR_SNAPSHOT_CORRUPT'],
    ['constructor.json', withCustom('"constructor":{"prototype":{"polluted":true}}'), 'ERR_SNAPSHOT_CORRUPT'],
    ['deep-proto.json', withCustom('"list":[{"ok":1},{"__proto__":{"polluted":true}}]'), 'ERR_SNAPSHOT_CORRUPT'],
    ['read-only-key.json', withCustom('"threadId":7'), 'ERR_SNAPSHOT_CORRUPT']
  ]
  for (const [name, content, code] of cases) {
    const file = path.join(dir, name)
    if (content !== null) fs.writeFileSync(file, content)
    await assert.rejects(loadSnapshot(file), (err) => {
      assert.ok(err instanceof Error)
      assert.equal(err.code, code, `${name}: ${err.message}`)
      assert.ok(err.message.includes(file), `${name}: the message names the file: ${err.message}`)
      return true
    })
  }
  // A directory where the file should be.
  await assert.rejects(loadSnapshot(dir), { code: 'ERR_SNAPSHOT_IO' })
  assertSameRegistry(before, 'failed loads')
  assert.equal(({}).polluted, undefined, 'no prototype was touched')
  assert.equal(Object.prototype.polluted, undefined)
  // The good file still loads.
  assert.equal((await loadSnapshot(good))[0].custom.payload.length, 2000)
})

test('saveSnapshot and loadSnapshot: bad paths throw synchronously', () => {
  for (const fn of [saveSnapshot, loadSnapshot]) {
    for (const bad of ['', undefined, null, 42, {}]) {
      assert.throws(() => fn(bad), (err) => {
        assert.ok(err instanceof TypeError)
        assert.equal(err.code, 'ERR_INVALID_OPTIONS')
        return true
      })
    }
  }
})

// ---------------------------------------------------------------------------------------
// Crash safety. The tests run as root, and root ignores permission bits (chmod 0500 on a
// directory does not stop it), so each case below breaks the write in a way that also stops
// root: a non-empty directory in place of the target (rename cannot replace it), a parent
// that is a regular file (ENOTDIR), an immutable directory (chattr +i: EPERM even for
// root, where the file system allows it), a file-size limit that makes the write fail
// half-way like a full disk (EFBIG), and a process killed in the middle of a write.

test('crash safety: the target replaced by a non-empty directory', async () => {
  const dir = tempDir()
  await untrackedOpen('crash_dir')
  const target = path.join(dir, 'snap.json')
  fs.mkdirSync(target)
  fs.writeFileSync(path.join(target, 'inside'), 'precious')
  await assert.rejects(saveSnapshot(target), (err) => {
    assert.equal(err.code, 'ERR_SNAPSHOT_IO')
    assert.match(err.message, /snap\.json/)
    return true
  })
  assert.ok(fs.statSync(target).isDirectory())
  assert.equal(fs.readFileSync(path.join(target, 'inside'), 'utf8'), 'precious')
  assert.deepEqual(leftovers(dir, []), ['snap.json'], 'the temporary file was removed')
})

test('crash safety: a path whose parent is a regular file, or a missing directory', async () => {
  const dir = tempDir()
  await untrackedOpen('crash_parent')
  const notADir = path.join(dir, 'file')
  fs.writeFileSync(notADir, 'just a file')
  await assert.rejects(saveSnapshot(path.join(notADir, 'snap.json')), { code: 'ERR_SNAPSHOT_IO' })
  assert.equal(fs.readFileSync(notADir, 'utf8'), 'just a file')
  await assert.rejects(saveSnapshot(path.join(dir, 'missing', 'snap.json')), { code: 'ERR_SNAPSHOT_IO' })
  assert.deepEqual(leftovers(dir, []), ['file'])
})

// Root: chattr +i; anyone else: chmod 0500. Skipped only when neither can make the
// directory read-only for this user.
function makeReadOnly (dir) {
  if (process.getuid() !== 0) {
    fs.chmodSync(dir, 0o500)
    return () => fs.chmodSync(dir, 0o700)
  }
  const r = spawnSync('chattr', ['+i', dir], { encoding: 'utf8' })
  if (r.status !== 0) return null
  return () => spawnSync('chattr', ['-i', dir])
}

test('crash safety: a read-only directory keeps the previous snapshot', { skip: process.platform === 'win32' && 'makes the directory read-only with chattr +i or chmod 0500 (and asks process.getuid()), none of which Windows has' }, async (t) => {
  const dir = tempDir()
  const file = path.join(dir, 'snap.json')
  await untrackedOpen('crash_ro')
  updateSessionState('crash_ro', { generation: 1 })
  await saveSnapshot(file)
  const previous = fs.readFileSync(file)
  const undo = makeReadOnly(dir)
  if (!undo) {
    t.skip('cannot make a directory read-only for root here (chattr +i refused)')
    return
  }
  cleanups.push(undo)
  const probe = path.join(dir, 'probe')
  assert.throws(() => fs.writeFileSync(probe, 'x'), 'the directory really is read-only for this user')
  updateSessionState('crash_ro', { generation: 2 })
  await assert.rejects(saveSnapshot(file), { code: 'ERR_SNAPSHOT_IO' })
  assert.deepEqual(fs.readFileSync(file), previous, 'the previous snapshot is intact')
  assert.deepEqual(leftovers(dir, []), ['snap.json'])
  assert.equal((await loadSnapshot(file))[0].custom.generation, 1)
})

test('crash safety: a write that fails half-way (file-size limit, like a full disk) keeps the previous snapshot', { skip: process.platform === 'win32' && 'limits the file size with bash `ulimit -f` (RLIMIT_FSIZE), which Windows does not have' }, async () => {
  const dir = tempDir()
  const file = path.join(dir, 'snap.json')
  await untrackedOpen('crash_efbig')
  updateSessionState('crash_efbig', { generation: 1 })
  await saveSnapshot(file)
  const previous = fs.readFileSync(file)
  // A child whose files may not grow beyond 64 KiB writes a 1 MB snapshot to the same path.
  const run = runChild(['once', file, server.url('open', { id: 'snap_child' }), String(1_000_000)], { shell: 'ulimit -f 64' })
  const { code, signal } = await run.closed
  assert.equal(signal, null, run.stderr)
  assert.equal(code, 0, run.stderr)
  assert.equal(run.stderr, '')
  assert.equal(run.lines.length, 1, run.stdout)
  assert.equal(run.lines[0].code, 'ERR_SNAPSHOT_IO', `the child's save: ${run.stdout}`)
  assert.match(run.lines[0].message, /too large/i)
  assert.deepEqual(fs.readFileSync(file), previous, 'the previous snapshot is intact')
  assert.deepEqual(leftovers(dir, []), ['snap.json'], 'the half-written temporary file was removed')
  assert.equal((await loadSnapshot(file))[0].sessionId, 'crash_efbig')
})

test('crash safety: a process killed in the middle of a write leaves a whole snapshot', { skip: process.platform === 'win32' && 'kills the writer with SIGKILL; Windows has no signals' }, async () => {
  const BLOB = 8_000_000
  let killedMidWrite = false
  for (let attempt = 1; attempt <= 5 && !killedMidWrite; attempt++) {
    const dir = tempDir()
    const file = path.join(dir, 'snap.json')
    const run = runChild(['loop', file, server.url('open', { id: 'snap_child' }), String(BLOB)])
    try {
      await until(() => run.lines.length >= 1 || run.child.exitCode !== null, 'the first completed save', 15_000)
      assert.equal(run.child.exitCode, null, `the child is saving: ${run.stderr}`)
      // Kill the child the moment a temporary file shows up: mid-write, before the rename.
      const deadline = Date.now() + 5000
      while (Date.now() < deadline) {
        if (fs.readdirSync(dir).some((n) => n.endsWith('.tmp'))) break
      }
      run.child.kill('SIGKILL')
    } finally {
      run.child.kill('SIGKILL')
    }
    const { signal } = await run.closed
    assert.equal(signal, 'SIGKILL')
    const done = run.lines.map((l) => l.round)
    const loaded = await loadSnapshot(file)
    assert.equal(loaded.length, 1)
    const [s] = loaded
    assert.equal(s.sessionId, 'snap_child')
    assert.equal(s.custom.blob.length, BLOB, 'the whole session, not a part')
    const last = done.at(-1)
    assert.ok(s.custom.round >= last && s.custom.round <= last + 1,
      `the snapshot is the last completed save (${last}) or the one being renamed: ${s.custom.round}`)
    killedMidWrite = leftovers(dir, ['snap.json']).some((n) => n.endsWith('.tmp'))
  }
  assert.ok(killedMidWrite, 'at least one kill landed in the middle of a write (a temporary file was left)')
})

// ---------------------------------------------------------------------------------------
// Hostile paths (issue 9): what saveSnapshot and loadSnapshot do with symbolic links, FIFOs,
// sockets, devices, huge files, and the temporary files that killed writers leave behind.
// Device nodes are made with mknod in a temporary directory (root only): the tests never
// touch the real /dev/null or /dev/zero.

const isTmp = (n) => n.endsWith('.tmp')
const kindOf = (p) => {
  const s = fs.lstatSync(p)
  if (s.isFIFO()) return 'fifo'
  if (s.isSocket()) return 'socket'
  if (s.isCharacterDevice()) return 'char'
  if (s.isDirectory()) return 'dir'
  if (s.isSymbolicLink()) return 'link'
  if (s.isFile()) return 'file'
  return 'other'
}

function mkfifo (p) {
  const r = spawnSync('mkfifo', ['-m', '600', p], { encoding: 'utf8' })
  assert.equal(r.status, 0, `mkfifo: ${r.stderr}`)
}

/** A character device node in a temp dir (major, minor as in /dev/null 1,3 or /dev/zero 1,5), or why not. */
function mknodChar (p, major, minor) {
  if (process.getuid() !== 0) return { why: 'not running as root: mknod needs CAP_MKNOD' }
  const r = spawnSync('mknod', ['-m', '600', p, 'c', String(major), String(minor)], { encoding: 'utf8' })
  if (r.status !== 0) return { why: `mknod refused here: ${r.stderr.trim()}` }
  return {}
}

/** A listening Unix-domain socket at `p`, closed by the test's cleanup. */
async function unixSocketAt (p) {
  const net = await import('node:net')
  const srv = net.createServer()
  await new Promise((resolve, reject) => srv.once('error', reject).listen(p, resolve))
  cleanups.push(() => srv.close())
  return srv
}

/** Rejects when `promise` takes longer than `ms`, calling `unblock` first. */
async function within (promise, ms, what, unblock) {
  let timer
  const late = new Promise((resolve, reject) => {
    timer = setTimeout(() => {
      unblock?.()
      reject(new Error(`${what} did not settle within ${ms} ms`))
    }, ms)
  })
  try {
    return await Promise.race([promise, late])
  } finally {
    clearTimeout(timer)
  }
}

test('saveSnapshot follows symbolic links (chains, relative targets, dangling) and keeps them', { skip: process.platform === 'win32' && 'makes symbolic links, which need an administrator or developer mode on Windows' }, async () => {
  const dir = tempDir()
  const realDir = path.join(dir, 'real')
  const linkDir = path.join(dir, 'links')
  fs.mkdirSync(realDir)
  fs.mkdirSync(linkDir)
  await untrackedOpen('snap_links')
  const real = path.join(realDir, 'sessions.json')
  fs.writeFileSync(real, 'previous')
  // links/current -> latest -> ../real/sessions.json (relative, through a second link)
  fs.symlinkSync('latest', path.join(linkDir, 'current'))
  fs.symlinkSync('../real/sessions.json', path.join(linkDir, 'latest'))

  const info = await saveSnapshot(path.join(linkDir, 'current'))
  assert.equal(info.path, path.join(linkDir, 'current'), 'the path as given')
  assert.equal(fs.readlinkSync(path.join(linkDir, 'current')), 'latest', 'the first link is still a link')
  assert.equal(fs.readlinkSync(path.join(linkDir, 'latest')), '../real/sessions.json', 'the second too')
  assert.equal(kindOf(real), 'file')
  assert.equal(fs.statSync(real).mode & 0o777, 0o600)
  assert.equal((await loadSnapshot(real))[0].sessionId, 'snap_links', 'the file the links name was written')
  assert.equal((await loadSnapshot(path.join(linkDir, 'current')))[0].sessionId, 'snap_links', 'and loads through them')
  assert.deepEqual(fs.readdirSync(linkDir).sort(), ['current', 'latest'], 'no temporary file beside the links')
  assert.deepEqual(fs.readdirSync(realDir), ['sessions.json'], 'none beside the file either')

  // An absolute link, saved twice: the second save replaces the file, not the link.
  fs.symlinkSync(real, path.join(linkDir, 'absolute'))
  updateSessionState('snap_links', { generation: 2 })
  await saveSnapshot(path.join(linkDir, 'absolute'))
  assert.equal(fs.readlinkSync(path.join(linkDir, 'absolute')), real)
  assert.equal((await loadSnapshot(real))[0].custom.generation, 2)

  // A dangling link: the file is created where it points; the link stays.
  fs.symlinkSync('../real/new.json', path.join(linkDir, 'dangling'))
  await saveSnapshot(path.join(linkDir, 'dangling'))
  assert.equal(fs.readlinkSync(path.join(linkDir, 'dangling')), '../real/new.json')
  assert.equal(kindOf(path.join(realDir, 'new.json')), 'file')
  assert.equal((await loadSnapshot(path.join(realDir, 'new.json')))[0].custom.generation, 2)

  // A loop: refused, the links untouched, nothing created.
  fs.symlinkSync('loop-b', path.join(linkDir, 'loop-a'))
  fs.symlinkSync('loop-a', path.join(linkDir, 'loop-b'))
  await assert.rejects(saveSnapshot(path.join(linkDir, 'loop-a')), (err) => {
    assert.equal(err.code, 'ERR_SNAPSHOT_IO')
    assert.match(err.message, /symbolic links/)
    assert.ok(err.message.includes('loop-a'), err.message)
    return true
  })
  assert.equal(fs.readlinkSync(path.join(linkDir, 'loop-a')), 'loop-b')
  assert.equal(fs.readlinkSync(path.join(linkDir, 'loop-b')), 'loop-a')
  assert.deepEqual(fs.readdirSync(linkDir).sort(), ['absolute', 'current', 'dangling', 'latest', 'loop-a', 'loop-b'])
  assert.deepEqual(fs.readdirSync(realDir).sort(), ['new.json', 'sessions.json'])
})

test('saveSnapshot refuses a FIFO, a socket, a directory and a device, and leaves them as they were', { skip: process.platform === 'win32' && 'makes a FIFO with mkfifo and a Unix socket, which Windows does not have' }, async (t) => {
  const dir = tempDir()
  await untrackedOpen('snap_kinds')
  const fifo = path.join(dir, 'fifo')
  mkfifo(fifo)
  const sock = path.join(dir, 'sock')
  await unixSocketAt(sock)
  const emptyDir = path.join(dir, 'empty-dir')
  fs.mkdirSync(emptyDir)
  fs.symlinkSync('fifo', path.join(dir, 'link-to-fifo'))
  const cases = [
    [fifo, 'fifo', /a FIFO, not a regular file/],
    [sock, 'socket', /a socket, not a regular file/],
    [emptyDir, 'dir', /a directory, not a regular file/],
    [path.join(dir, 'link-to-fifo'), 'link', /a FIFO, not a regular file/]
  ]
  for (const [p, kind, message] of cases) await refusesSave(p, kind, message)
  assert.equal(kindOf(fifo), 'fifo', 'the link did not lead to the FIFO being replaced')
  assert.deepEqual(fs.readdirSync(dir).filter(isTmp), [], 'no temporary file left')

  const device = path.join(dir, 'null-device')
  const made = mknodChar(device, 1, 3)
  await t.test('a character device made with mknod (like /dev/null)', { skip: made.why }, async () => {
    const { rdev } = fs.statSync(device)
    await refusesSave(device, 'char', /a character device, not a regular file/)
    assert.equal(fs.statSync(device).rdev, rdev, 'the same device numbers')
    assert.deepEqual(fs.readdirSync(dir).filter(isTmp), [])
  })
})

async function refusesSave (p, kind, message) {
  const ino = fs.lstatSync(p).ino
  await assert.rejects(saveSnapshot(p), (err) => {
    assert.equal(err.code, 'ERR_SNAPSHOT_IO', `${p}: ${err.message}`)
    assert.match(err.message, message)
    assert.ok(err.message.includes(p), `the message names the path: ${err.message}`)
    return true
  })
  assert.equal(kindOf(p), kind, `${p} is still a ${kind}`)
  assert.equal(fs.lstatSync(p).ino, ino, `${p} is the very same node`)
}

test('loadSnapshot refuses a FIFO without blocking, a socket, a directory and a device without reading', { skip: process.platform === 'win32' && 'makes a FIFO with mkfifo and a Unix socket, which Windows does not have' }, async (t) => {
  const dir = tempDir()
  const fifo = path.join(dir, 'fifo')
  mkfifo(fifo)
  const sock = path.join(dir, 'sock')
  await unixSocketAt(sock)
  fs.symlinkSync('fifo', path.join(dir, 'link-to-fifo'))
  const cases = [
    [fifo, /a FIFO, not a regular file/],
    [path.join(dir, 'link-to-fifo'), /a FIFO, not a regular file/],
    [sock, /a socket, not a regular file/],
    [dir, /a directory, not a regular file/]
  ]
  // Should a load block on the FIFO, opening its other end lets it go before the test fails.
  const unblock = () => { try { fs.closeSync(fs.openSync(fifo, fs.constants.O_WRONLY | fs.constants.O_NONBLOCK)) } catch {} }
  for (const [p, message] of cases) await refusesLoad(p, message, unblock)

  const zero = path.join(dir, 'zero-device')
  const made = mknodChar(zero, 1, 5)
  await t.test('a character device made with mknod (like /dev/zero)', { skip: made.why }, async () => {
    await refusesLoad(zero, /a character device, not a regular file/)
    assert.equal(kindOf(zero), 'char')
  })
})

async function refusesLoad (p, message, unblock) {
  await within(assert.rejects(loadSnapshot(p), (err) => {
    assert.equal(err.code, 'ERR_SNAPSHOT_IO', `${p}: ${err.message}`)
    assert.match(err.message, message)
    assert.ok(err.message.includes(p), err.message)
    return true
  }), 3000, `loadSnapshot(${p})`, unblock)
}

test('loadSnapshot: a file over 256 MiB is refused with ERR_SNAPSHOT_TOO_LARGE before it is read', { skip: process.platform === 'win32' && 'makes a symbolic link, which needs an administrator or developer mode on Windows' }, async () => {
  const dir = tempDir()
  const CAP = 256 * 1024 * 1024
  const big = path.join(dir, 'big.json')
  // Sparse: no disk space used. Read whole, it would be 256 MiB of NUL bytes.
  fs.writeFileSync(big, '')
  fs.truncateSync(big, CAP + 1)
  fs.symlinkSync('big.json', path.join(dir, 'link-to-big'))
  for (const p of [big, path.join(dir, 'link-to-big')]) {
    await assert.rejects(loadSnapshot(p), (err) => {
      assert.equal(err.code, 'ERR_SNAPSHOT_TOO_LARGE', err.message)
      assert.ok(!(err instanceof TypeError))
      assert.ok(err.message.includes(p), err.message)
      assert.ok(err.message.includes(String(CAP + 1)), `the message gives the size: ${err.message}`)
      assert.ok(err.message.includes('256 MiB'), err.message)
      return true
    })
  }
})

test('the sweep removes the temporary files of dead writers of that path, and nothing else', { skip: process.platform === 'win32' && 'tells dead writers by their pid with kill(pid, 0), which the Windows sweep does not use (it goes by age)' }, async () => {
  const dir = tempDir()
  const file = path.join(dir, 'snap.json')
  await untrackedOpen('snap_sweep')
  const exited = spawn(process.execPath, ['-e', ''], { stdio: 'ignore' })
  await new Promise((resolve) => exited.once('close', resolve))
  const dead = exited.pid
  const live = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)'], { stdio: 'ignore' })
  cleanups.push(() => live.kill('SIGKILL'))
  const old = new Date(Date.now() - 10 * 60_000)
  const plant = (name, aged = true) => {
    const p = path.join(dir, name)
    fs.writeFileSync(p, 'half a snapshot')
    if (aged) fs.utimesSync(p, old, old)
  }
  const swept = [`.snap.json.${dead}.0.tmp`, `.snap.json.${dead}.17.tmp`]
  for (const n of swept) plant(n)
  const kept = [
    `.snap.json.${live.pid}.0.tmp`, // a writer that still runs
    `.snap.json.${process.pid}.999.tmp`, // this process: maybe a save in flight
    `.other.json.${dead}.0.tmp`, // another target's
    `.snap.json.${dead}.0.tmp.bak`, // not our name
    `snap.json.${dead}.0.tmp`,
    `.snap.json.${dead}.x.tmp`,
    `.snap.json.0.1.tmp`, // pid 0 would mean "my process group"
    'unrelated.txt'
  ]
  for (const n of kept) plant(n)
  const fresh = `.snap.json.${dead}.5.tmp` // changed within the last 60 s: left for now
  plant(fresh, false)
  const asDir = `.snap.json.${dead}.6.tmp` // our name, but a directory
  fs.mkdirSync(path.join(dir, asDir))

  await saveSnapshot(file)
  assert.equal(live.exitCode, null, 'the live writer still runs')
  assert.deepEqual(fs.readdirSync(dir).sort(), [...kept, fresh, asDir, 'snap.json'].sort(), `only ${swept} went`)
  assert.equal((await loadSnapshot(file))[0].sessionId, 'snap_sweep')

  // The sweep looks beside the real file when the path is a symbolic link.
  const realDir = path.join(dir, 'real')
  fs.mkdirSync(realDir)
  fs.symlinkSync(path.join(realDir, 's.json'), path.join(dir, 'link.json'))
  fs.writeFileSync(path.join(realDir, `.s.json.${dead}.3.tmp`), 'x')
  fs.utimesSync(path.join(realDir, `.s.json.${dead}.3.tmp`), old, old)
  await saveSnapshot(path.join(dir, 'link.json'))
  assert.deepEqual(fs.readdirSync(realDir), ['s.json'])
})

test('temporary files of writers killed with SIGKILL mid-write are swept by the next save', { skip: process.platform === 'win32' && 'kills the writers with SIGKILL; Windows has no signals' }, async (t) => {
  const BLOB = 8_000_000
  const dir = tempDir()
  const file = path.join(dir, 'snap.json')
  let kills = 0
  for (let attempt = 1; attempt <= 10 && fs.readdirSync(dir).filter(isTmp).length < 3; attempt++) {
    const run = runChild(['loop', file, server.url('open', { id: 'snap_child' }), String(BLOB)])
    try {
      await until(() => run.lines.length >= 1 || run.child.exitCode !== null, 'the first completed save', 15_000)
      assert.equal(run.child.exitCode, null, `the child is saving: ${run.stderr}`)
      const before = new Set(fs.readdirSync(dir).filter(isTmp))
      const deadline = Date.now() + 5000
      while (Date.now() < deadline) {
        if (fs.readdirSync(dir).some((n) => isTmp(n) && !before.has(n))) break
      }
    } finally {
      run.child.kill('SIGKILL')
    }
    const { signal } = await run.closed
    assert.equal(signal, 'SIGKILL')
    kills++
  }
  const left = fs.readdirSync(dir).filter(isTmp)
  assert.ok(left.length >= 3, `${kills} kills left ${left.length} temporary files`)
  t.diagnostic(`${kills} kills left ${left.length} temporary files`)
  // Fresh files are left for 60 s (a live writer in another pid namespace could own them):
  // age them instead of waiting.
  const old = new Date(Date.now() - 120_000)
  for (const n of left) fs.utimesSync(path.join(dir, n), old, old)

  await untrackedOpen('snap_after_kills')
  await saveSnapshot(file)
  assert.deepEqual(fs.readdirSync(dir), ['snap.json'], `the ${left.length} leftovers of ${kills} killed writers are gone`)
  assert.equal((await loadSnapshot(file))[0].sessionId, 'snap_after_kills')
})

test('two processes saving to the same path never leave a torn file, nor remove each other\'s', async (t) => {
  const dir = tempDir()
  const file = path.join(dir, 'snap.json')
  const sizes = [3_000_000, 5_000_000]
  const runs = sizes.map((n, i) => runChild(['loop', file, server.url('open', { id: `snap_child_${i}` }), String(n)]))
  try {
    await until(() => runs.every((r) => r.lines.length >= 1 || r.child.exitCode !== null), 'both children saving', 20_000)
    const seen = new Set()
    const start = runs.map((r) => r.lines.length)
    let loads = 0
    while (loads < 200 && (seen.size < 2 || runs.some((r, i) => r.lines.length < start[i] + 5))) {
      for (const r of runs) assert.equal(r.child.exitCode, null, `a writer stopped: ${r.stderr}`)
      const loaded = await loadSnapshot(file)
      assert.equal(loaded.length, 1)
      assert.ok(sizes.includes(loaded[0].custom.blob.length), `a whole snapshot: ${loaded[0].custom.blob.length}`)
      seen.add(loaded[0].custom.blob.length)
      loads++
      await sleep(20)
    }
    assert.equal(seen.size, 2, `both writers' snapshots were seen over ${loads} loads`)
    t.diagnostic(`${loads} whole loads; rounds saved: ${runs.map((r) => r.lines.length).join(' and ')}`)
    for (const [i, r] of runs.entries()) {
      assert.ok(r.lines.length >= start[i] + 5, `writer ${i} kept saving: ${r.lines.length} rounds`)
      assert.equal(r.child.exitCode, null, `writer ${i} never failed: ${r.stderr}`)
      assert.equal(r.stderr, '')
    }
  } finally {
    for (const r of runs) r.child.kill('SIGKILL')
  }
  await Promise.all(runs.map((r) => r.closed))
  const loaded = await loadSnapshot(file)
  assert.ok(sizes.includes(loaded[0].custom.blob.length))
})
