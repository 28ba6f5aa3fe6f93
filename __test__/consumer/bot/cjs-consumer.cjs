// A CommonJS user of the package: require() through the package's entry point.
// Uses stand-in sockets (an EventEmitter as `ev`), so no Baileys is needed here.
'use strict'
const assert = require('node:assert/strict')
const { EventEmitter } = require('node:events')
const registry = require('baileys-socket-registry')

assert.match(require.resolve('baileys-socket-registry'), /[\\/]baileys-socket-registry[\\/]index\.js$/)
const functions = [
  'registerSocket', 'getSocket', 'getAllSockets', 'getSocketCount', 'hasSocket', 'unregisterSocket',
  'updateSessionState', 'getSessionState', 'getAllSessions', 'getStats', 'createSocketWrapper',
  'clearAll', 'configure', 'onStateChange', 'waitForState', 'saveSnapshot', 'loadSnapshot'
]
for (const name of functions) assert.equal(typeof registry[name], 'function', name)
assert.equal(registry.__napiBindingTarget, 'native')

function fakeSocket () {
  const ev = new EventEmitter()
  return { ev, ended: 0, end () { this.ended++ } }
}

const a = registry.registerSocket('cjs_a', fakeSocket())
const b = registry.registerSocket('cjs_b', fakeSocket(), { track: false })
assert.equal(registry.getSocket('cjs_a'), a)
assert.equal(registry.getSocketCount(), 2)
assert.deepEqual([...registry.getAllSockets().keys()], ['cjs_a', 'cjs_b'])
registry.updateSessionState('cjs_a', { isConnected: true, role: 'main' })
assert.equal(registry.getSessionState('cjs_a').role, 'main')
assert.equal(registry.getSessionState('cjs_b').status, null)
const stats = registry.getStats()
assert.deepEqual(stats.connectedSessions, ['cjs_a'])
assert.deepEqual(stats.disconnectedSessions, ['cjs_b'])
assert.equal(stats.byStatus.untracked, 1)
assert.throws(() => registry.registerSocket(42, {}), { name: 'TypeError', code: 'ERR_INVALID_SESSION_ID' })
assert.throws(() => registry.registerSocket('x', 'not a socket'), { name: 'TypeError', code: 'ERR_INVALID_SOCKET' })
assert.throws(() => registry.updateSessionState('cjs_a', { connects: 1 }), { code: 'ERR_READ_ONLY_STATE_KEY' })
assert.throws(() => registry.createSocketWrapper(() => ({}))({}), { code: 'ERR_MISSING_SESSION_ID' })
registry.clearAll()
assert.equal(registry.getSocketCount(), 0)
assert.equal(a.ended + b.ended, 2)
console.log('CJS OK')
