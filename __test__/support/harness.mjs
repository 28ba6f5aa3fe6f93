// Small helpers shared by the registry specs.

import { createRequire } from 'node:module'

/**
 * The package as a user loads it: through its real entry, the package `main` (index.js,
 * which re-exports the generated binding.js), resolved from the package root.
 */
export const registry = createRequire(import.meta.url)('../..')

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

/**
 * Polls `check` until it returns a truthy value (which is returned), or fails after
 * `timeoutMs` with `what` (a text, or a function giving one) in the message.
 */
export async function until (check, what, timeoutMs = 5000) {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = check()
    if (value) return value
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${typeof what === 'function' ? what() : what}`)
    }
    await sleep(5)
  }
}

/** Waits until the session's tracked status is `status`, returning its state. */
export function untilStatus (sessionId, status, timeoutMs = 5000) {
  return until(() => {
    const s = registry.getSessionState(sessionId)
    return s && s.status === status ? s : null
  }, `${sessionId} to reach status ${status} (now ${registry.getSessionState(sessionId)?.status})`, timeoutMs)
}

/** Whether a Baileys socket's websocket is closed (or closing) for good. */
export function wsClosed (sock) {
  const ws = sock.ws
  return Boolean(ws && (ws.isClosed || ws.isClosing))
}

/** Counts active resources by type, e.g. { TCPSocketWrap: 2, Timeout: 1 }. */
export function resourceCounts () {
  const counts = {}
  for (const r of process.getActiveResourcesInfo()) counts[r] = (counts[r] ?? 0) + 1
  return counts
}
