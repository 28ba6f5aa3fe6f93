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
