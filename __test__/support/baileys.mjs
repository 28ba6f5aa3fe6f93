// Helpers to make real Baileys test sockets cheaply and without leaking.
//
// All sockets share the same caches (as a multi-session app should), so that a
// test counting timers, handles or memory measures the code under test rather
// than the five NodeCache instances Baileys makes per socket otherwise.

import pino from 'pino'

/**
 * The Baileys builds the registry is tested with, newest line first. `key` is what
 * loadBaileys takes (the numbers 7 and 6 stay accepted for the first two).
 * 6.17.16 is what `npm install @whiskeysockets/baileys` gives today (npm's `latest`).
 */
export const BUILDS = Object.freeze([
  Object.freeze({ key: '7.0.0-rc14', line: 7, module: '@whiskeysockets/baileys' }),
  Object.freeze({ key: '6.7.24', line: 6, module: 'baileys6' }),
  Object.freeze({ key: '6.17.16', line: 6, module: 'baileys617' })
])

const ALIASES = { 7: '7.0.0-rc14', 6: '6.7.24', 617: '6.17.16', '6.17': '6.17.16' }

/**
 * Load one Baileys build: '7.0.0-rc14' (or 7) -> @whiskeysockets/baileys,
 * '6.7.24' (or 6) -> baileys6, '6.17.16' -> baileys617 (npm aliases).
 * Returns a module namespace whose `default` and `makeWASocket` are the factory and
 * which has every export (proto, Curve, the binary-node codec, ...).
 */
export async function loadBaileys (build = '7.0.0-rc14') {
  const key = ALIASES[build] ?? String(build)
  const entry = BUILDS.find((b) => b.key === key)
  if (!entry) throw new Error(`unknown Baileys build: ${build}`)
  const ns = await import(entry.module)
  if (typeof ns.default === 'function') return ns
  // 6.17.16 is CommonJS: Node's import() finds only some of its named exports (no `proto`),
  // and `default` is its whole module.exports object rather than the factory.
  const all = ns.default
  return Object.freeze({ ...all, default: all.makeWASocket, makeWASocket: all.makeWASocket })
}

/**
 * Which build a namespace from loadBaileys is: '7.0.0-rc14', '6.7.24' or '6.17.16'
 * (MessageRetryManager is 7.x only; makeInMemoryStore survives in 6.17.x, not in 6.7.x).
 */
export function buildOf (baileys) {
  if (typeof baileys.MessageRetryManager === 'function') return '7.0.0-rc14'
  return typeof baileys.makeInMemoryStore === 'function' ? '6.17.16' : '6.7.24'
}

/** 6 or 7: the major line of a namespace from loadBaileys. */
export function lineOf (baileys) {
  return typeof baileys.MessageRetryManager === 'function' ? 7 : 6
}

// Silent pino (a Baileys dependency, resolvable from the project root): Baileys
// checks `logger.level` and calls child(), so a real pino keeps its code paths.
export const silentLogger = pino({ level: 'silent' })

// Tiny Map-backed CacheStore (get/set/del/flushAll): no TTL timers, no deps.
export function makeMemoryCache () {
  const map = new Map()
  return {
    get: (key) => map.get(key),
    set: (key, value) => {
      map.set(key, value)
      return true
    },
    del: (key) => map.delete(key),
    flushAll: () => map.clear(),
    get size () {
      return map.size
    }
  }
}

// The signal-key cache passed to makeCacheableSignalKeyStore is a no-op on
// purpose: that wrapper keys entries as `${type}.${id}` with no per-socket
// prefix, so one real cache shared by several sockets would hand one socket's
// pre-keys/sessions to another. The key store below is already in memory.
const noopSignalCache = Object.freeze({
  get: () => undefined,
  set: () => true,
  del: () => true,
  flushAll: () => {}
})

/** Caches shared by every test socket (message-level, safe to share). */
export const sharedCaches = {
  msgRetryCounterCache: makeMemoryCache(),
  callOfferCache: makeMemoryCache(),
  placeholderResendCache: makeMemoryCache(),
  userDevicesCache: makeMemoryCache(),
  signalKeyCache: noopSignalCache
}

/** Empty the shared caches (between tests that put messages through them). */
export function clearSharedCaches () {
  for (const cache of Object.values(sharedCaches)) cache.flushAll()
}

/** In-memory SignalKeyStore: { get(type, ids), set(data), clear() }. */
export function makeMemoryKeyStore () {
  const data = new Map() // type -> Map(id -> value)
  return {
    async get (type, ids) {
      const byId = data.get(type)
      const out = {}
      for (const id of ids) {
        const value = byId?.get(id)
        if (value !== undefined) out[id] = value
      }
      return out
    },
    async set (update) {
      for (const type in update) {
        let byId = data.get(type)
        if (!byId) data.set(type, (byId = new Map()))
        for (const id in update[type]) {
          const value = update[type][id]
          if (value == null) byId.delete(id)
          else byId.set(id, value)
        }
      }
    },
    async clear () {
      data.clear()
    }
  }
}

// One initAuthCreds() (~11 ms of pure-JS curve work) per Baileys module; later
// calls deep-clone it through BufferJSON, the same round trip as the file auth
// state, so Buffers stay Buffers and no object is shared between sockets.
const templates = new WeakMap()
let phoneSeq = 0

/**
 * Auth creds for a test socket.
 * registered: true -> creds.me = { id: '<phone>:<device>@s.whatsapp.net', name }
 * so the client logs in; false -> no `me`, so it registers (QR flow).
 * fresh: true -> a new initAuthCreds() (distinct keys) instead of a clone.
 * Clones share key material (noise/identity keys), never objects.
 */
export function makeCreds (baileys, { registered = true, fresh = false, phone, device = 1, name = 'Test' } = {}) {
  let creds
  if (fresh) {
    creds = baileys.initAuthCreds()
  } else {
    let template = templates.get(baileys)
    if (!template) {
      template = JSON.stringify(baileys.initAuthCreds(), baileys.BufferJSON.replacer)
      templates.set(baileys, template)
    }
    creds = JSON.parse(template, baileys.BufferJSON.reviver)
  }
  if (registered) {
    const user = phone ?? `1555${String(++phoneSeq).padStart(7, '0')}`
    creds.me = { id: `${user}:${device}@s.whatsapp.net`, name }
    creds.registered = true
  }
  return creds
}

/**
 * A real socket from makeWASocket pointed at `url` (a wa-server URL).
 * creds: from makeCreds (default: makeCreds(baileys, { registered })).
 * keys: a SignalKeyStore (default: a fresh in-memory one).
 * Any other option goes to makeWASocket as is and wins over the defaults here.
 */
export function makeTestSocket ({ baileys, url, creds, registered = true, keys, logger = silentLogger, ...config } = {}) {
  if (!baileys) throw new Error('makeTestSocket: baileys (a module namespace from loadBaileys) is required')
  if (!url) throw new Error('makeTestSocket: url is required')
  const makeWASocket = baileys.makeWASocket ?? baileys.default
  const auth = {
    creds: creds ?? makeCreds(baileys, { registered }),
    keys: baileys.makeCacheableSignalKeyStore(keys ?? makeMemoryKeyStore(), logger, sharedCaches.signalKeyCache)
  }
  return makeWASocket({
    waWebSocketUrl: url,
    auth,
    logger,
    printQRInTerminal: false,
    fireInitQueries: false,
    markOnlineOnConnect: false,
    syncFullHistory: false,
    // false: no 20 s "AwaitingInitialSync" timer after login, which 6.x never
    // clears on end() (7.x does) and which would keep the process alive.
    shouldSyncHistoryMessage: () => false,
    msgRetryCounterCache: sharedCaches.msgRetryCounterCache,
    callOfferCache: sharedCaches.callOfferCache,
    placeholderResendCache: sharedCaches.placeholderResendCache,
    userDevicesCache: sharedCaches.userDevicesCache,
    // Baileys (both lines) keeps its handshake and query timers running when a socket is
    // ended mid-request; short ones let a test process exit soon after its last test.
    connectTimeoutMs: 5000,
    defaultQueryTimeoutMs: 3000,
    ...config
  })
}

const PREDICATES = {
  open: (u) => u.connection === 'open',
  close: (u) => u.connection === 'close',
  connecting: (u) => u.connection === 'connecting',
  qr: (u) => typeof u.qr === 'string' && u.qr.length > 0,
  ready: (u) => u.receivedPendingNotifications === true
}

/**
 * Resolve with the first connection.update payload matching `predicate` (a
 * function, or 'open' | 'close' | 'connecting' | 'qr' | 'ready'). Rejects after
 * timeoutMs, or at once when the socket closes without a match (the error has
 * `update` and `statusCode`). Add it right after makeWASocket to see 'connecting'.
 * The listener is removed on every outcome (6.x end() also removes it).
 */
export function waitForConnection (sock, predicate = 'open', timeoutMs = 5000) {
  const match = typeof predicate === 'function' ? predicate : PREDICATES[predicate]
  if (!match) throw new Error(`unknown predicate: ${predicate}`)
  return new Promise((resolve, reject) => {
    const seen = []
    const done = (fn, value) => {
      clearTimeout(timer)
      sock.ev.off('connection.update', listener)
      fn(value)
    }
    const listener = (update) => {
      seen.push(update)
      if (match(update)) return done(resolve, update)
      if (update.connection === 'close') {
        const error = update.lastDisconnect?.error
        const statusCode = statusCodeOf(update)
        const err = new Error(`socket closed before the awaited update (status ${statusCode}: ${error?.message})`)
        err.update = update
        err.statusCode = statusCode
        done(reject, err)
      }
    }
    const timer = setTimeout(() => {
      const err = new Error(`no matching connection.update within ${timeoutMs} ms; saw ${JSON.stringify(seen.map(summarize))}`)
      err.seen = seen
      done(reject, err)
    }, timeoutMs)
    sock.ev.on('connection.update', listener)
  })
}

/** Record every connection.update from now on: { updates, stop() }. */
export function recordUpdates (sock) {
  const updates = []
  const listener = (u) => updates.push(u)
  sock.ev.on('connection.update', listener)
  return { updates, stop: () => sock.ev.off('connection.update', listener) }
}

/** lastDisconnect.error.output.statusCode of an update, or undefined. */
export function statusCodeOf (update) {
  return update?.lastDisconnect?.error?.output?.statusCode
}

function summarize (u) {
  const out = { ...u }
  if (u.lastDisconnect) out.lastDisconnect = { status: statusCodeOf(u), message: u.lastDisconnect.error?.message }
  if (u.qr) out.qr = `${u.qr.slice(0, 12)}...`
  return out
}

/**
 * End a socket cleanly on every build (6.x end() is sync, 7.x async) and wait
 * until its websocket is really closed, so no TCP handle outlives the call.
 */
export async function endSocket (sock, error = undefined, { timeoutMs = 2000 } = {}) {
  // 6.x end() nulls sock.ws.socket at once, so take the raw ws first.
  const raw = sock.ws?.socket
  const ended = sock.end(error)
  // 6.17.16's end() removes the ws 'error' listeners: a socket still connecting then reports
  // its aborted handshake as an unhandled 'error' (an uncaught exception) on a later tick.
  sock.ws?.on?.('error', () => {})
  await ended
  if (raw && raw.readyState !== raw.CLOSED) {
    await new Promise((resolve) => {
      const timer = setTimeout(() => {
        raw.terminate() // the peer never answered the close frame
        resolve()
      }, timeoutMs)
      raw.once('close', () => {
        clearTimeout(timer)
        resolve()
      })
    })
  }
}
