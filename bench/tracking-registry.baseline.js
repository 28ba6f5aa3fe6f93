'use strict'
// The second JavaScript baseline for `npm run bench`: what a careful bot author would write
// instead of this package, given the same job, in plain JavaScript. Like the native registry it
// follows each socket's `connection.update` with the rules of crates/registry-core/src/state.rs
// (`SessionState::apply_connection_update`, `apply_patch`, `apply_me`), keeps the same state
// fields as plain objects, and hands out copies, so a caller cannot change the registry by
// changing a result.
//
// Where it does less than the package (so it is, if anything, a harder baseline to beat):
// - it listens to `connection.update` only; the package also follows `messages.upsert` and
//   `creds.update` (here `messagesIn`, `messagesOut`, `lastInboundAt`, `lastOutboundAt` stay as
//   they start, and `me` is read from `socket.authState.creds.me` when the socket opens, as the
//   package does then);
// - one private Map per thread: no process-wide view, no events, no snapshots, no health pass.
//
// Letting go of a socket follows the package's rules: the new socket takes the id first, then
// the old one loses this module's listener (`ev.off`), its `connection.update` is silenced
// (`ev.emit` drops it, `ev.removeAllListeners('connection.update')`), it is ended with
// `end(undefined)` (a rejected promise caught) and its ws gets a no-op `error` listener.

const STATUSES = ['connecting', 'qr', 'open', 'closed', 'loggedOut', 'replaced', 'restartRequired', 'leaseLost']
// Keys only the registry sets (registry-core's READ_ONLY_KEYS) and keys that could reach a
// prototype (FORBIDDEN_KEYS): updateSessionState refuses both.
const READ_ONLY = new Set(['threadId', 'tracked', 'lastDisconnect', 'me', 'hasQr', 'connects', 'disconnects',
  'connectedAt', 'disconnectedAt', 'lastInboundAt', 'lastOutboundAt', 'messagesIn', 'messagesOut', 'supervision'])
const FORBIDDEN = new Set(['__proto__', 'constructor', 'prototype'])
const REASONS = {
  428: 'connectionClosed',
  440: 'connectionReplaced',
  401: 'loggedOut',
  500: 'badSession',
  515: 'restartRequired',
  411: 'multideviceMismatch',
  403: 'forbidden',
  503: 'unavailableService'
}
const THREAD_ID = require('node:worker_threads').threadId
const IDLE_AFTER_MS = 600_000

const sockets = new Map()
const states = new Map()
// sessionId -> this module's connection.update listener on that id's socket.
const listeners = new Map()
const faults = { count: 0, last: null }

function fail (ErrorType, code, message) {
  const err = new ErrorType(message)
  err.code = code
  return err
}

function reasonOf (code, message) {
  if (code === 408) return typeof message === 'string' && message.includes('Timed Out') ? 'timedOut' : 'connectionLost'
  return REASONS[code] ?? null
}

function statusAfterClose (code) {
  if (code === 401) return 'loggedOut'
  if (code === 440) return 'replaced'
  if (code === 515) return 'restartRequired'
  return 'closed'
}

function newState (now, tracked) {
  return {
    createdAt: now,
    lastActivity: now,
    isConnected: false,
    error: null,
    status: tracked ? 'connecting' : null,
    tracked,
    lastDisconnect: null,
    me: null,
    hasQr: false,
    connects: 0,
    disconnects: 0,
    connectedAt: null,
    disconnectedAt: null,
    lastInboundAt: null,
    lastOutboundAt: null,
    messagesIn: 0,
    messagesOut: 0,
    threadId: THREAD_ID,
    // superviseSession's: this baseline supervises nothing.
    supervision: null,
    // The bot's own keys: null until it sets one, so that the common state copies no more.
    custom: null
  }
}

function recordFault (sessionId, what, error) {
  faults.count++
  faults.last = `${sessionId}: ${what}: ${error?.message ?? String(error)}`
}

/** `lastDisconnect.error` is a Boom error (`output.statusCode`), a plain Error, or missing. */
function readDisconnect (lastDisconnect) {
  const error = lastDisconnect.error
  if (error === null || typeof error !== 'object') return { code: null, message: null }
  const output = error.output
  const raw = output !== null && typeof output === 'object' ? output.statusCode : undefined
  const code = typeof raw === 'number' && raw >= 0 && raw <= 0xffffffff ? Math.trunc(raw) : null
  const message = typeof error.message === 'string' ? error.message : null
  return { code, message }
}

/** `socket.authState.creds.me` as `{ id, lid }`, or null when it names nobody. */
function readMe (sock) {
  const me = sock.authState?.creds?.me
  if (me === null || typeof me !== 'object') return null
  const id = typeof me.id === 'string' ? me.id : null
  const lid = typeof me.lid === 'string' ? me.lid : null
  return id === null && lid === null ? null : { id, lid }
}

function applyConnectionUpdate (state, update, sock) {
  const now = Date.now()
  const qr = update.qr
  if (typeof qr === 'string' && qr.length > 0) {
    state.hasQr = true
    state.status = 'qr'
  }
  const lastDisconnect = update.lastDisconnect
  const disconnect = lastDisconnect !== null && typeof lastDisconnect === 'object' ? readDisconnect(lastDisconnect) : null
  const connection = update.connection
  if (connection === 'connecting') {
    state.status = 'connecting'
  } else if (connection === 'open') {
    state.status = 'open'
    state.isConnected = true
    state.error = null
    state.hasQr = false
    state.connects++
    state.connectedAt = now
  } else if (connection === 'close') {
    state.status = statusAfterClose(disconnect === null ? null : disconnect.code)
    state.isConnected = false
    state.hasQr = false
    state.disconnects++
    state.disconnectedAt = now
  }
  if (disconnect !== null) {
    state.error = disconnect.message
    state.lastDisconnect = { code: disconnect.code, reason: reasonOf(disconnect.code, disconnect.message), message: disconnect.message, at: now }
  }
  state.lastActivity = now
  if (connection === 'open') {
    const me = readMe(sock)
    if (me !== null && (state.me === null || state.me.id !== me.id || state.me.lid !== me.lid)) state.me = me
  }
}

/** Refuses keys that could reach a prototype, at any depth (a JSON.parse reviver). */
function refuseForbidden (key, value) {
  if (FORBIDDEN.has(key)) throw fail(TypeError, 'ERR_FORBIDDEN_STATE_KEY', `state key '${key}' is not allowed`)
  return value
}

/** A JSON-data copy of a custom value (what the package keeps: Dates become ISO strings). */
function dataOf (value, key) {
  if (value === null || typeof value === 'string' || typeof value === 'boolean') return value
  if (typeof value === 'number') return Number.isFinite(value) ? value : null
  if (typeof value === 'object') return JSON.parse(JSON.stringify(value), refuseForbidden)
  throw fail(TypeError, 'ERR_INVALID_STATE_VALUE', `state key '${key}' is not data (${typeof value})`)
}

/** A deep copy of stored JSON data (plain objects, arrays, primitives): cheaper than structuredClone. */
function copyData (value) {
  if (value === null || typeof value !== 'object') return value
  if (Array.isArray(value)) {
    const out = new Array(value.length)
    for (let i = 0; i < value.length; i++) out[i] = copyData(value[i])
    return out
  }
  const out = {}
  for (const key of Object.keys(value)) out[key] = copyData(value[key])
  return out
}

/** The caller's copy: the registry's fields, then the bot's own keys (deep copies). */
function copyOf (state) {
  const ld = state.lastDisconnect
  const me = state.me
  const out = {
    createdAt: state.createdAt,
    lastActivity: state.lastActivity,
    isConnected: state.isConnected,
    error: state.error,
    status: state.status,
    tracked: state.tracked,
    lastDisconnect: ld === null ? null : { code: ld.code, reason: ld.reason, message: ld.message, at: ld.at },
    me: me === null ? null : { id: me.id, lid: me.lid },
    hasQr: state.hasQr,
    connects: state.connects,
    disconnects: state.disconnects,
    connectedAt: state.connectedAt,
    disconnectedAt: state.disconnectedAt,
    lastInboundAt: state.lastInboundAt,
    lastOutboundAt: state.lastOutboundAt,
    messagesIn: state.messagesIn,
    messagesOut: state.messagesOut,
    threadId: state.threadId,
    supervision: null
  }
  const custom = state.custom
  if (custom !== null) {
    for (const key of Object.keys(custom)) {
      const value = custom[key]
      out[key] = value !== null && typeof value === 'object' ? copyData(value) : value
    }
  }
  return out
}

function letGo (sessionId, sock, own) {
  const ev = sock.ev
  try {
    if (own !== undefined) ev.off('connection.update', own)
  } catch (e) { recordFault(sessionId, 'ev.off threw', e) }
  // Silence: nobody hears this socket's connection.update any more (see the package's README).
  try {
    if (ev !== null && typeof ev === 'object') {
      const emit = ev.emit
      if (typeof emit === 'function') ev.emit = (event, ...args) => event === 'connection.update' ? false : emit.call(ev, event, ...args)
      if (typeof ev.removeAllListeners === 'function') ev.removeAllListeners('connection.update')
    }
  } catch (e) { recordFault(sessionId, 'silencing threw', e) }
  let ws
  try {
    ws = sock.ws
    const ended = typeof sock.end === 'function' ? sock.end(undefined) : undefined
    if (ended !== null && typeof ended === 'object' && typeof ended.then === 'function') ended.then(undefined, () => {})
  } catch (e) { recordFault(sessionId, 'end() threw', e) }
  try {
    if (ws !== null && typeof ws === 'object' && typeof ws.on === 'function') ws.on('error', () => {})
  } catch (e) { recordFault(sessionId, 'guarding ws threw', e) }
}

function registerSocket (sessionId, sock, options) {
  if (typeof sessionId !== 'string' || sessionId.length === 0) {
    throw fail(TypeError, 'ERR_INVALID_SESSION_ID', 'registerSocket(sessionId, socket): sessionId must be a non-empty string')
  }
  if (sock === null || (typeof sock !== 'object' && typeof sock !== 'function')) {
    throw fail(TypeError, 'ERR_INVALID_SOCKET', 'registerSocket(sessionId, socket): socket must be an object')
  }
  const old = sockets.get(sessionId)
  // The very socket already registered: nothing changes (ending it would kill a live session).
  if (old === sock) return sock
  const oldListener = listeners.get(sessionId)
  const tracked = options == null || options.track !== false
  const state = newState(Date.now(), tracked)
  // The new socket takes the id before the old one is let go (ending it runs the caller's code).
  sockets.set(sessionId, sock)
  states.set(sessionId, state)
  listeners.delete(sessionId)
  if (tracked) {
    const onUpdate = (update) => {
      if (sockets.get(sessionId) === sock && update !== null && typeof update === 'object') applyConnectionUpdate(state, update, sock)
    }
    try {
      sock.ev.on('connection.update', onUpdate)
      listeners.set(sessionId, onUpdate)
    } catch (e) {
      recordFault(sessionId, 'tracking disabled', e)
      state.tracked = false
      state.status = null
      state.error = `tracking disabled: ${e?.message ?? String(e)}`
    }
  }
  if (old !== undefined) letGo(sessionId, old, oldListener)
  return sock
}

function unregisterSocket (sessionId) {
  const sock = sockets.get(sessionId)
  if (sock === undefined) return false
  const own = listeners.get(sessionId)
  sockets.delete(sessionId)
  states.delete(sessionId)
  listeners.delete(sessionId)
  letGo(sessionId, sock, own)
  return true
}

/** Merges `updates` like the package: validated first, so nothing changes when it throws. */
function updateSessionState (sessionId, updates) {
  if (updates !== null && updates !== undefined && (typeof updates !== 'object' || Array.isArray(updates))) {
    throw fail(TypeError, 'ERR_INVALID_STATE_UPDATE', 'updateSessionState(sessionId, updates): updates must be a plain object')
  }
  const keys = updates == null ? [] : Object.keys(updates)
  let createdAt, isConnected, error, status
  let custom = null
  for (let i = 0; i < keys.length; i++) {
    const key = keys[i]
    const value = updates[key]
    switch (key) {
      case 'lastActivity': break
      case 'createdAt':
        if (typeof value !== 'number' || !(value >= -62167219200000 && value <= 253402300799999)) {
          throw fail(TypeError, 'ERR_INVALID_STATE_VALUE', "state key 'createdAt' must be a number of epoch milliseconds")
        }
        createdAt = value
        break
      case 'isConnected':
        if (typeof value !== 'boolean') throw fail(TypeError, 'ERR_INVALID_STATE_VALUE', "state key 'isConnected' must be a boolean")
        isConnected = value
        break
      case 'error':
        if (value == null) error = null
        else if (typeof value === 'string') error = value
        else if (typeof value === 'object' && typeof value.message === 'string') error = value.message
        else throw fail(TypeError, 'ERR_INVALID_STATE_VALUE', "state key 'error' must be a string, null or an Error")
        break
      case 'status':
        if (value != null && !STATUSES.includes(value)) throw fail(TypeError, 'ERR_INVALID_STATE_VALUE', "state key 'status' must be null or a known status")
        status = value ?? null
        break
      default:
        if (FORBIDDEN.has(key)) throw fail(TypeError, 'ERR_FORBIDDEN_STATE_KEY', `state key '${key}' is not allowed`)
        if (READ_ONLY.has(key)) throw fail(TypeError, 'ERR_READ_ONLY_STATE_KEY', `state key '${key}' is kept by the registry`)
        ;(custom ??= []).push(key, value === undefined ? undefined : dataOf(value, key))
    }
  }
  const state = states.get(sessionId)
  if (state === undefined) return
  if (createdAt !== undefined) state.createdAt = createdAt
  if (isConnected !== undefined) state.isConnected = isConnected
  if (error !== undefined) state.error = error
  if (status !== undefined) state.status = status
  if (custom !== null) {
    const own = state.custom ?? (state.custom = Object.create(null))
    let deleted = false
    for (let i = 0; i < custom.length; i += 2) {
      if (custom[i + 1] === undefined) {
        delete own[custom[i]]
        deleted = true
      } else {
        own[custom[i]] = custom[i + 1]
      }
    }
    // The last one deleted: copies go back to copying nothing extra.
    if (deleted && Object.keys(own).length === 0) state.custom = null
  }
  state.lastActivity = Date.now()
}

function getSessionState (sessionId) {
  const state = states.get(sessionId)
  return state === undefined ? null : copyOf(state)
}

function getAllSessions () {
  const all = {}
  for (const [sessionId, state] of states) {
    // Assigning `__proto__` would set the prototype: that one id is defined instead.
    if (sessionId === '__proto__') Object.defineProperty(all, sessionId, { value: copyOf(state), enumerable: true, writable: true, configurable: true })
    else all[sessionId] = copyOf(state)
  }
  return all
}

function getStats () {
  const now = Date.now()
  const activeSessions = []
  const inactiveSessions = []
  const errorSessions = []
  const connectedSessions = []
  const disconnectedSessions = []
  const byStatus = { connecting: 0, qr: 0, open: 0, closed: 0, loggedOut: 0, replaced: 0, restartRequired: 0, leaseLost: 0, untracked: 0 }
  for (const [sessionId, state] of states) {
    activeSessions.push({
      sessionId,
      createdAt: new Date(state.createdAt).toISOString(),
      lastActivity: new Date(state.lastActivity).toISOString(),
      isConnected: state.isConnected,
      error: state.error,
      status: state.status
    })
    if (now - state.lastActivity > IDLE_AFTER_MS) inactiveSessions.push(sessionId)
    if (state.error) errorSessions.push({ sessionId, error: state.error })
    if (state.isConnected) connectedSessions.push(sessionId)
    else disconnectedSessions.push(sessionId)
    byStatus[state.status ?? 'untracked']++
  }
  return {
    totalSessions: states.size,
    activeSessions,
    inactiveSessions,
    errorSessions,
    connectedSessions,
    disconnectedSessions,
    byStatus,
    idleAfterMs: IDLE_AFTER_MS,
    socketFaults: { count: faults.count, last: faults.last }
  }
}

function clearAll () {
  for (const sessionId of [...sockets.keys()]) unregisterSocket(sessionId)
}

module.exports = {
  registerSocket,
  getSocket: (sessionId) => sockets.get(sessionId) ?? null,
  getAllSockets: () => new Map(sockets),
  getSocketCount: () => sockets.size,
  hasSocket: (sessionId) => sockets.has(sessionId),
  unregisterSocket,
  updateSessionState,
  getSessionState,
  getAllSessions,
  getStats,
  clearAll
}
