// How the bot makes a WhatsApp socket: makeWASocket, then registerSocket under
// the session id (from the barrel, as the bot did with socket-factory.js).
//
// Test-only: WA_URL (the loopback server, e.g. ws://127.0.0.1:PORT/ws/chat)
// replaces WhatsApp's address, and `serverModes` tells that server how to treat
// a session (default 'open': log in).
import makeWASocket from '@whiskeysockets/baileys'
import pino from 'pino'
import { registerSocket } from '../whatsapp/core/index.js'

const logger = pino({ level: 'silent' })

/** sessionId -> loopback server mode ('open', 'qr', 'fail401', ...). */
export const serverModes = new Map()

// One set of message caches for every session, as a multi-session bot should
// have: without them Baileys makes five caches with 10-minute timers per socket.
function memoryCache () {
  const map = new Map()
  return {
    get: (key) => map.get(key),
    set: (key, value) => {
      map.set(key, value)
      return true
    },
    del: (key) => map.delete(key),
    flushAll: () => map.clear()
  }
}
const caches = {
  msgRetryCounterCache: memoryCache(),
  callOfferCache: memoryCache(),
  placeholderResendCache: memoryCache(),
  userDevicesCache: memoryCache()
}

function serverUrl (sessionId) {
  if (!process.env.WA_URL) return undefined
  const query = new URLSearchParams({ mode: serverModes.get(sessionId) ?? 'open', id: sessionId })
  return `${process.env.WA_URL}?${query}`
}

/** The makeWASocket config of a session. */
export function socketConfig (authState, sessionId) {
  return {
    auth: authState,
    waWebSocketUrl: serverUrl(sessionId),
    logger,
    printQRInTerminal: false,
    fireInitQueries: false,
    markOnlineOnConnect: false,
    syncFullHistory: false,
    shouldSyncHistoryMessage: () => false,
    ...caches
  }
}

export function createBaileysSocket (authState, sessionId) {
  const sock = makeWASocket(socketConfig(authState, sessionId))
  return registerSocket(sessionId, sock)
}
