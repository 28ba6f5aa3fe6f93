'use strict'
// The JavaScript baseline for `npm run bench`: the module the native registry replaces
// (`whatsapp/core/socket-factory.js`), with the behaviour of issue 2's drop-in table, written
// as such a module is written: two Maps, no tricks, nothing made slower than it needs to be.
// Cleaning up a socket follows the same rules as the registry (remove only the listeners this
// module added, with `ev.off`, then `end(undefined)`; anything thrown is swallowed).
//
// It is CommonJS because this package is (no "type": "module"); the bot's copy is ESM, which
// changes nothing at run time. Every worker thread that loads it gets its own Maps: that is
// the reason the cross-thread benchmark needs postMessage for this side.

const sockets = new Map()
const sessionStates = new Map()
// Listeners this module added to a socket's `ev` (only createSocketWrapper adds any).
const ownListeners = new Map()

function cleanupSocket (sessionId, sock) {
  const listeners = ownListeners.get(sessionId)
  if (listeners !== undefined) {
    ownListeners.delete(sessionId)
    for (let i = 0; i < listeners.length; i++) {
      try {
        sock.ev.off(listeners[i][0], listeners[i][1])
      } catch {}
    }
  }
  try {
    const ended = typeof sock.end === 'function' ? sock.end(undefined) : undefined
    if (ended && typeof ended.then === 'function') ended.then(undefined, () => {})
  } catch {}
}

function invalidId (what) {
  const err = new TypeError(`${what}: sessionId must be a non-empty string`)
  err.code = 'ERR_INVALID_SESSION_ID'
  return err
}

function registerSocket (sessionId, sock) {
  if (typeof sessionId !== 'string' || sessionId.length === 0) throw invalidId('registerSocket(sessionId, socket)')
  if (sock === null || (typeof sock !== 'object' && typeof sock !== 'function')) {
    const err = new TypeError('registerSocket(sessionId, socket): socket must be an object')
    err.code = 'ERR_INVALID_SOCKET'
    throw err
  }
  const old = sockets.get(sessionId)
  if (old !== undefined) cleanupSocket(sessionId, old)
  sockets.set(sessionId, sock)
  const now = Date.now()
  sessionStates.set(sessionId, { createdAt: now, lastActivity: now, isConnected: false, error: null })
  return sock
}

function getSocket (sessionId) {
  return sockets.get(sessionId) || null
}

function getAllSockets () {
  return new Map(sockets)
}

function getSocketCount () {
  return sockets.size
}

function hasSocket (sessionId) {
  return sockets.has(sessionId)
}

function unregisterSocket (sessionId) {
  const sock = sockets.get(sessionId)
  if (sock === undefined) return false
  sockets.delete(sessionId)
  sessionStates.delete(sessionId)
  cleanupSocket(sessionId, sock)
  return true
}

function updateSessionState (sessionId, updates) {
  const state = sessionStates.get(sessionId)
  if (state === undefined) return
  sessionStates.set(sessionId, { ...state, ...updates, lastActivity: Date.now() })
}

function getSessionState (sessionId) {
  return sessionStates.get(sessionId) || null
}

function getAllSessions () {
  return Object.fromEntries(sessionStates)
}

function getStats () {
  const stats = {
    totalSessions: sockets.size,
    activeSessions: [],
    inactiveSessions: [],
    errorSessions: [],
    connectedSessions: [],
    disconnectedSessions: []
  }
  for (const [sessionId, state] of sessionStates) {
    stats.activeSessions.push({
      sessionId,
      createdAt: new Date(state.createdAt).toISOString(),
      lastActivity: new Date(state.lastActivity).toISOString(),
      isConnected: state.isConnected,
      error: state.error
    })
    if (state.isConnected) stats.connectedSessions.push(sessionId)
    else stats.disconnectedSessions.push(sessionId)
    if (state.error) stats.errorSessions.push({ sessionId, error: state.error })
  }
  return stats
}

function createSocketWrapper (makeWASocket) {
  return function createBaileysSocket (config) {
    const sessionId = config?.sessionId || config?.auth?.sessionId
    if (typeof sessionId !== 'string' || sessionId.length === 0) {
      const err = new Error('the socket wrapper needs config.sessionId (or config.auth.sessionId)')
      err.code = 'ERR_MISSING_SESSION_ID'
      throw err
    }
    const sock = makeWASocket(config)
    registerSocket(sessionId, sock)
    sock._sessionId = sessionId
    const onUpdate = (update) => {
      if (sockets.get(sessionId) !== sock) return
      const { connection, lastDisconnect } = update
      if (connection === 'open') updateSessionState(sessionId, { isConnected: true, error: null })
      else if (connection === 'close') updateSessionState(sessionId, { isConnected: false })
      if (lastDisconnect) updateSessionState(sessionId, { error: lastDisconnect.error?.message ?? null })
    }
    sock.ev.on('connection.update', onUpdate)
    ownListeners.set(sessionId, [['connection.update', onUpdate]])
    return sock
  }
}

function clearAll () {
  for (const sessionId of [...sockets.keys()]) unregisterSocket(sessionId)
}

module.exports = {
  registerSocket,
  getSocket,
  getAllSockets,
  getSocketCount,
  hasSocket,
  unregisterSocket,
  updateSessionState,
  getSessionState,
  getAllSessions,
  getStats,
  createSocketWrapper,
  clearAll
}
