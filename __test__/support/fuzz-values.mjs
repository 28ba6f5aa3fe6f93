// Generators for the fuzz test (fuzz.spec.mjs, fixtures/fuzz-child.mjs).
//
// fast-check generates plain, printable *specs* (`{ t: 'proxy', ... }`); `materialize` turns
// a spec into the hostile value itself when the call runs. Fresh objects are built for every
// call, so a frozen or revoked value never leaks into the next call, and a failing case prints
// as data that can be read and replayed.
//
// Callbacks (getters, Proxy traps, `then`, `toJSON`, socket methods, listeners, factories,
// patched builtins) run a `CallbackSpec`: a few re-entrant registry calls, then return a value
// or throw one. Every value they throw is remembered in `ctx.thrown` with its origin, so the
// runner can tell the caller's own error passing through from an error the registry made.

import fc from 'fast-check'

/** Ids that collide on purpose: lone surrogates, their replacement character, prototype names. */
export const ID_POOL = [
  'a',
  'b',
  's1',
  'user\uD800',
  'user\uDC00',
  'user\uFFFD',
  'user\uD800\uDC00',
  '__proto__',
  'constructor',
  'toString',
  'hasOwnProperty',
  ' ',
  '\u0000',
  '0',
  '4294967295'
]

export const STATUSES = ['connecting', 'qr', 'open', 'closed', 'loggedOut', 'replaced', 'restartRequired', 'leaseLost']

/** State keys the registry knows, keys it keeps to itself, and keys that are just hostile. */
const KEY_POOL = [
  'status',
  'isConnected',
  'error',
  'createdAt',
  'lastActivity',
  'threadId',
  'tracked',
  'me',
  'connects',
  'messagesIn',
  'custom',
  'then',
  'toJSON',
  'length',
  'x',
  'y',
  'k\uD800',
  'k\uDC00',
  '',
  'constructor',
  'prototype',
  '__proto__'
]

/** The prototype names the Object.prototype patch defines getters for. */
export const PROTO_GETTER_NAMES = [
  'then',
  'code',
  'message',
  'sessionId',
  'auth',
  'track',
  'takeover',
  'timeoutMs',
  'idleAfterMs',
  'stuckAfterMs',
  'ev',
  'on',
  'off',
  'end',
  'status',
  'toJSON',
  'authState',
  'creds',
  'me',
  'connection',
  'lastDisconnect',
  'error',
  'output',
  'statusCode'
]

export const BUILTIN_PATCHES = [
  'Map.prototype.set',
  'Map.prototype.get',
  'Map.prototype.delete',
  'Array.prototype.push',
  'Function.prototype.bind',
  'Function.prototype.call',
  'Function.prototype.apply',
  'Promise.prototype.then',
  'Object.prototype getter',
  'Object.keys',
  'JSON.stringify',
  'Error.captureStackTrace',
  'process.emitWarning'
]

const idArb = fc.oneof(
  { weight: 8, arbitrary: fc.constantFrom(...ID_POOL) },
  { weight: 1, arbitrary: fc.string({ maxLength: 8 }) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 6 }) }
)

const primitiveArb = fc.oneof(
  fc.constantFrom(undefined, null, true, false, 0, -0, 1, -1, NaN, Infinity, -Infinity, 2 ** 53, 2 ** 31, 2 ** 32 - 1, 1e308, 5e-324, 0.5),
  fc.double(),
  fc.integer(),
  fc.bigInt({ min: -(2n ** 70n), max: 2n ** 70n }),
  fc.constantFrom(...ID_POOL),
  fc.constantFrom(...STATUSES),
  fc.string({ unit: 'binary', maxLength: 12 }),
  fc.string({ maxLength: 12 })
)

const throwKindArb = fc.constantFrom('error', 'string', 'symbol', 'object', 'proxy', 'errorWithGetter', 'undefinedLike')

/** What a callback does. `call` nests a whole registry call (bounded by the letrec depth). */
function actArb (tie) {
  return fc.oneof(
    { weight: 3, arbitrary: fc.record({ a: fc.constant('unreg'), id: idArb }) },
    { weight: 2, arbitrary: fc.constant({ a: 'unregAll' }) },
    { weight: 2, arbitrary: fc.constant({ a: 'clearAll' }) },
    { weight: 3, arbitrary: fc.record({ a: fc.constant('reg'), id: idArb, sock: fc.constantFrom('plain', 'pool', 'noEv', 'self') }) },
    { weight: 2, arbitrary: fc.record({ a: fc.constant('update'), id: idArb, status: fc.constantFrom(...STATUSES) }) },
    { weight: 1, arbitrary: fc.constant({ a: 'getAll' }) },
    { weight: 1, arbitrary: fc.constant({ a: 'stats' }) },
    { weight: 1, arbitrary: fc.record({ a: fc.constant('wait'), id: idArb, status: fc.constantFrom(...STATUSES) }) },
    { weight: 1, arbitrary: fc.constant({ a: 'save' }) },
    { weight: 1, arbitrary: fc.constant({ a: 'unsubscribeAll' }) },
    { weight: 2, arbitrary: fc.record({ a: fc.constant('handle'), index: fc.nat(7), op: fc.constantFrom('stop', 'restart') }) },
    { weight: 1, arbitrary: fc.record({ a: fc.constant('supervise'), id: idArb }) },
    { weight: 2, arbitrary: fc.record({ a: fc.constant('call'), call: tie('call') }) }
  )
}

function callbackArb (tie) {
  return fc.record({
    acts: fc.array(actArb(tie), { maxLength: 3 }),
    end: fc.constantFrom('return', 'return', 'throw'),
    throwKind: throwKindArb,
    ret: tie('leaf')
  })
}

/** Numbers (and not-numbers) for policy and cluster option fields: in range, at the edges, hostile. */
const msArb = fc.constantFrom(1, 2, 5, 0, -1, 0.5, NaN, Infinity, -Infinity, 1e12, 2 ** 31 - 1, 2 ** 31, 2 ** 53, 3600000, 3600001, 60000, 300, '10', null, true, -0)
const smallMsArb = fc.constantFrom(1, 2, 5, 20)

export const POLICY_REASONS = ['restartRequired', 'connectionClosed', 'connectionLost', 'timedOut', 'unavailableService', 'badSession', 'loggedOut', 'forbidden', 'multideviceMismatch', 'connectionReplaced', 'unknown', 'makeSocketFailed']

/** A spec of an object whose entries may be getters, around a map of key -> value spec. */
function entriesArb (entries, tie) {
  return fc.record({
    t: fc.constant('entries'),
    entries: fc.tuple(...entries.map(([key, v]) => fc.option(fc.record({ key: fc.constant(key), v, getter: fc.boolean(), cb: fc.option(tie('callback'), { freq: 3 }) }), { freq: 2 })))
      .map((list) => list.filter((e) => e !== null)),
    extra: fc.option(fc.record({ key: fc.constantFrom('maxAttempt', 'bogus', '__proto__', 'constructor', 'then', 'toJSON', ''), v: tie('leaf') }), { freq: 6 }),
    wrap: fc.constantFrom('plain', 'plain', 'plain', 'nullProto', 'frozen', 'proxy', 'array')
  })
}

const prim = (arb) => arb.map((v) => ({ t: 'prim', v }))

const trapNames = ['get', 'has', 'ownKeys', 'getOwnPropertyDescriptor', 'getPrototypeOf', 'set', 'defineProperty', 'deleteProperty', 'isExtensible', 'apply']

/**
 * The spec arbitraries. `value` is any hostile value; `socket` a fake socket; `call` one
 * registry call (or pseudo-call such as emitting a Baileys event on a fake socket).
 */
export const arbs = fc.letrec((tie) => ({
  leaf: fc.oneof(
    { weight: 4, arbitrary: primitiveArb.map((v) => ({ t: 'prim', v })) },
    { weight: 1, arbitrary: fc.constant({ t: 'symbol' }) },
    { weight: 1, arbitrary: fc.constantFrom('plainEmpty', 'nullProto', 'date', 'map', 'regexp', 'error', 'typed', 'arraybuffer', 'promise', 'fn', 'class', 'boundFn', 'weakmap', 'revokedProxy', 'boxedString', 'circular', 'frozenNested', 'poolSocket', 'registry', 'global').map((k) => ({ t: 'builtin', k })) }
  ),
  callback: callbackArb(tie),
  value: fc.oneof(
    { maxDepth: 3, depthSize: 'small', withCrossShrink: true },
    { weight: 6, arbitrary: tie('leaf') },
    {
      weight: 3,
      arbitrary: fc.record({
        t: fc.constant('object'),
        props: fc.array(fc.record({ key: fc.oneof(fc.constantFrom(...KEY_POOL), fc.string({ unit: 'binary', maxLength: 4 })), kind: fc.constantFrom('data', 'data', 'getter', 'symbolKey'), v: tie('value'), cb: tie('callback') }), { maxLength: 4 }),
        proto: fc.constantFrom('object', 'null', 'array', 'error', 'hostileProto'),
        integrity: fc.constantFrom('none', 'none', 'freeze', 'seal', 'preventExtensions')
      })
    },
    { weight: 1, arbitrary: fc.record({ t: fc.constant('array'), items: fc.array(tie('value'), { maxLength: 5 }), holes: fc.boolean(), getterAt: fc.option(fc.nat(4)), cb: tie('callback') }) },
    { weight: 1, arbitrary: fc.record({ t: fc.constant('sparse'), length: fc.constantFrom(2 ** 32 - 1, 2 ** 31, 2 ** 24, 1e6, 65536), at: fc.constantFrom(0, 1, 1000, 65535), v: tie('leaf') }) },
    { weight: 1, arbitrary: fc.record({ t: fc.constant('deep'), depth: fc.constantFrom(50, 200, 1000, 10000, 100000), via: fc.constantFrom('object', 'array'), key: fc.constantFrom('k', 'x'.repeat(1024)), leaf: tie('leaf') }) },
    { weight: 1, arbitrary: fc.record({ t: fc.constant('long'), length: fc.constantFrom(1024, 65536, 1 << 20, 4 << 20), ch: fc.constantFrom('a', '\uD800', '\u00e9', '\uD83D\uDE00', '"', '\\', '\u0000'), asKey: fc.boolean() }) },
    { weight: 1, arbitrary: fc.record({ t: fc.constant('bigKeyNest'), keyLength: fc.constantFrom(1024, 65536, 1 << 20), depth: fc.constantFrom(10, 60), arrayLength: fc.constantFrom(10, 1000) }) },
    { weight: 1, arbitrary: fc.record({ t: fc.constant('wide'), count: fc.constantFrom(1000, 100000, 1000000), as: fc.constantFrom('array', 'object') }) },
    { weight: 2, arbitrary: fc.record({ t: fc.constant('proxy'), target: fc.constantFrom('object', 'array', 'function'), traps: fc.array(fc.record({ trap: fc.constantFrom(...trapNames), cb: tie('callback') }), { maxLength: 3 }), inner: tie('value') }) },
    { weight: 1, arbitrary: fc.record({ t: fc.constant('thenable'), cb: tie('callback') }) },
    { weight: 1, arbitrary: fc.record({ t: fc.constant('toJSON'), cb: tie('callback') }) },
    { weight: 1, arbitrary: fc.record({ t: fc.constant('toPrimitive'), cb: tie('callback') }) },
    { weight: 1, arbitrary: fc.record({ t: fc.constant('function'), cb: tie('callback') }) },
    { weight: 2, arbitrary: tie('socket') }
  ),
  socket: fc.record({
    t: fc.constant('socket'),
    ev: fc.constantFrom('emitter', 'emitter', 'emitter', 'missing', 'null', 'primitive', 'getterThrows', 'getterReenters', 'proxy', 'frozenEmitter', 'onNotFunction'),
    on: fc.option(tie('callback'), { freq: 2 }),
    off: fc.option(tie('callback'), { freq: 2 }),
    end: fc.option(tie('callback'), { freq: 2 }),
    endKind: fc.constantFrom('method', 'method', 'missing', 'notFunction', 'getterThrows'),
    chain: fc.constantFrom(0, 0, 0, 0, 2, 17, 20, 40),
    authState: fc.option(tie('value'), { freq: 3 }),
    integrity: fc.constantFrom('none', 'none', 'none', 'freeze', 'seal')
  }),
  backoffSpec: entriesArb([
    ['baseMs', fc.oneof({ weight: 3, arbitrary: prim(smallMsArb) }, { weight: 2, arbitrary: prim(msArb) })],
    ['factor', prim(fc.constantFrom(1, 2, 1000, 1001, 0.5, 0, NaN, Infinity, '2'))],
    ['maxMs', fc.oneof(prim(smallMsArb), prim(msArb))],
    ['jitter', prim(fc.constantFrom('full', 'none', 'some', '', null, 1))]
  ], tie),
  policy: fc.oneof(
    // A valid policy whose retries come within a run's pauses (1-2 ms, some at once).
    {
      weight: 4,
      arbitrary: fc.record({
        maxAttempts: fc.constantFrom(2, 3, 5, Infinity),
        unknown: fc.constantFrom('now', 'backoff'),
        makeSocketFailed: fc.constantFrom('now', 'backoff', 'stop'),
        connectionReplaced: fc.constantFrom('stop', 'backoff')
      }).map((r) => ({
        t: 'entries',
        entries: [
          { key: 'backoff', v: { t: 'entries', entries: [{ key: 'baseMs', v: { t: 'prim', v: 1 }, getter: false, cb: null }, { key: 'maxMs', v: { t: 'prim', v: 2 }, getter: false, cb: null }], extra: null, wrap: 'plain' }, getter: false, cb: null },
          { key: 'maxAttempts', v: { t: 'prim', v: r.maxAttempts }, getter: false, cb: null },
          { key: 'reasons', v: { t: 'dict', d: { unknown: { t: 'prim', v: r.unknown }, makeSocketFailed: { t: 'prim', v: r.makeSocketFailed }, connectionReplaced: { t: 'prim', v: r.connectionReplaced } } }, getter: false, cb: null }
        ],
        extra: null,
        wrap: 'plain'
      }))
    },
    { weight: 6, arbitrary: entriesArb([
      ['backoff', fc.oneof({ weight: 4, arbitrary: tie('backoffSpec') }, { weight: 1, arbitrary: tie('value') })],
      ['maxAttempts', prim(fc.constantFrom(1, 2, 3, 10, 0, -1, 1.5, NaN, Infinity, -Infinity, 'Infinity', 'NaN', 2 ** 53, 2 ** 32, null))],
      ['stableAfterMs', prim(msArb)],
      ['reasons', fc.oneof(
        { weight: 4, arbitrary: fc.dictionary(fc.constantFrom(...POLICY_REASONS, 'loggedout', '__proto__', 'toString'), fc.oneof(prim(fc.constantFrom('now', 'backoff', 'stop', 'retry', '', 5)), tie('backoffSpec')), { maxKeys: 4 }).map((d) => ({ t: 'dict', d })) },
        { weight: 1, arbitrary: tie('value') })]
    ], tie) },
    { weight: 1, arbitrary: tie('value') }
  ),
  maker: fc.oneof(
    {
      weight: 8,
      arbitrary: fc.record({
        t: fc.constant('maker'),
        // Re-entrant acts of makeSocket itself, on its own handle and id.
        selfActs: fc.array(fc.constantFrom('stopSelf', 'restartSelf', 'regSameId', 'unregSameId', 'clearAll', 'superviseSameId', 'supervisionOfSelf'), { maxLength: 2 }),
        cb: fc.option(tie('callback'), { freq: 3 }),
        result: fc.constantFrom('fresh', 'fresh', 'fresh', 'fresh', 'throw', 'nonSocket', 'pool', 'deferred', 'deferred', 'deferredReject', 'previous', 'hostile', 'thenableThrows'),
        sock: tie('socket'),
        // A budget of calls: a supervisor in a loop of failures stops getting fresh sockets.
        budget: fc.constantFrom(1, 2, 3, 5, 8)
      })
    },
    { weight: 1, arbitrary: tie('value') }
  ),
  clusterOptions: fc.oneof(
    { weight: 6, arbitrary: entriesArb([
      ['url', fc.oneof(
        { weight: 6, arbitrary: fc.constantFrom('redis://127.0.0.1:CLOSED', 'redis://localhost:CLOSED', 'redis://[::1]:CLOSED', 'redis://:pw@127.0.0.1:CLOSED/3', 'redis://u:p@127.0.0.1:CLOSED/99999', 'redis://127.0.0.1:CLOSED/abc', 'rediss://127.0.0.1:CLOSED', 'redis+unix:///nonexistent/redis.sock', 'unix:///nonexistent/redis.sock', 'redis://127.0.0.1:99999', 'redis://127.0.0.1:0', 'http://127.0.0.1:CLOSED', 'redis://', 'redis://:CLOSED', 'not a url', '', 'redis://127.0.0.1:CLOSED/\uD800', 'redis://127.0.0.1:CLOSED?protocol=resp3', 'redis://%zz@127.0.0.1:CLOSED').map((u) => ({ t: 'url', u })) },
        { weight: 1, arbitrary: tie('value') })],
      ['nodeId', fc.oneof({ weight: 4, arbitrary: prim(fc.constantFrom('n1', 'node-2')) }, { weight: 1, arbitrary: prim(fc.constantFrom('{x}', 'a}', '', 'x'.repeat(129), 'user\uD800', ' ', '\u0000')) }, { weight: 1, arbitrary: tie('leaf') })],
      ['prefix', fc.oneof({ weight: 4, arbitrary: prim(fc.constant('bsr-fuzz')) }, { weight: 1, arbitrary: prim(fc.constantFrom('{p}', '', 'x'.repeat(300), '\uDC00')) }, { weight: 1, arbitrary: tie('leaf') })],
      ['leaseMs', fc.oneof({ weight: 3, arbitrary: prim(fc.constantFrom(300, 1000, 15000)) }, { weight: 1, arbitrary: prim(msArb) })],
      ['marginMs', fc.oneof({ weight: 1, arbitrary: prim(fc.constantFrom(50, 100)) }, { weight: 1, arbitrary: prim(msArb) })],
      // Bounded on purpose when valid: a valid-looking URL points at a closed port, and a call
      // waits at most this long for it.
      ['opTimeoutMs', fc.oneof({ weight: 4, arbitrary: prim(fc.constantFrom(1, 20, 100)) }, { weight: 1, arbitrary: prim(fc.constantFrom(0, -1, NaN, Infinity, 60001, 0.5, '100', null)) })],
      ['renewEveryMs', fc.oneof({ weight: 1, arbitrary: prim(fc.constantFrom(50, 100)) }, { weight: 1, arbitrary: prim(msArb) })],
      ['dataLossGraceMs', fc.oneof({ weight: 2, arbitrary: prim(fc.constantFrom(0, 100)) }, { weight: 1, arbitrary: prim(msArb) })],
      ['mirrorFlushMs', fc.oneof({ weight: 2, arbitrary: prim(fc.constantFrom(1, 250)) }, { weight: 1, arbitrary: prim(msArb) })]
    ], tie) },
    { weight: 1, arbitrary: tie('value') }
  ),
  call: fc.oneof(
    { weight: 6, arbitrary: fc.record({ fn: fc.constant('registerSocket'), id: tie('id'), sock: tie('sockArg'), opts: fc.option(tie('value'), { freq: 2 }), nOpts: fc.constantFrom(2, 3) }) },
    { weight: 2, arbitrary: fc.record({ fn: fc.constantFrom('getSocket', 'hasSocket', 'getSessionState'), id: tie('id') }) },
    { weight: 3, arbitrary: fc.record({ fn: fc.constant('unregisterSocket'), id: tie('id') }) },
    { weight: 3, arbitrary: fc.record({ fn: fc.constant('getAllSockets') }) },
    { weight: 2, arbitrary: fc.record({ fn: fc.constantFrom('getSocketCount', 'getAllSessions', 'getStats', 'clearAll') }) },
    { weight: 5, arbitrary: fc.record({ fn: fc.constant('updateSessionState'), id: tie('id'), updates: tie('value') }) },
    { weight: 1, arbitrary: fc.record({ fn: fc.constant('createSocketWrapper'), factory: fc.oneof(tie('value'), fc.record({ t: fc.constant('factory'), cb: tie('callback'), sock: tie('sockArg') })) }) },
    { weight: 2, arbitrary: fc.record({ fn: fc.constant('callWrapper'), config: tie('value'), sessionId: fc.option(tie('id')), viaAuth: fc.boolean() }) },
    { weight: 1, arbitrary: fc.record({ fn: fc.constant('configure'), options: tie('value'), known: fc.option(fc.record({ idleAfterMs: fc.constantFrom(1, 0, -1, 1e12, NaN, 2 ** 53, 0.5, 1000), stuckAfterMs: fc.constantFrom(1, 0, -1, 1e12, NaN, 1000) })) }) },
    { weight: 2, arbitrary: fc.record({ fn: fc.constant('onStateChange'), listener: fc.oneof(fc.record({ t: fc.constant('listener'), cb: tie('callback') }), tie('value')) }) },
    { weight: 1, arbitrary: fc.record({ fn: fc.constant('unsubscribe'), index: fc.nat(5) }) },
    { weight: 3, arbitrary: fc.record({ fn: fc.constant('waitForState'), id: tie('id'), status: fc.oneof(fc.constantFrom(...STATUSES), tie('value')), options: fc.option(fc.oneof(tie('value'), fc.record({ timeoutMs: fc.constantFrom(0, 1, 5, -1, NaN, 2 ** 31, 1e12, Infinity) }))) }) },
    { weight: 2, arbitrary: fc.record({ fn: fc.constantFrom('saveSnapshot', 'loadSnapshot'), path: fc.oneof({ weight: 3, arbitrary: fc.constantFrom('new', 'existing', 'garbage', 'dir', 'missingDir', 'linkToFile', 'danglingLink', 'fifo', 'empty', 'truncated', 'bigSparse', 'devZeroLink', 'relative', 'longName') }, { weight: 1, arbitrary: tie('value') }) }) },
    { weight: 4, arbitrary: fc.record({ fn: fc.constant('emit'), index: fc.nat(7), event: fc.constantFrom('connection.update', 'messages.upsert', 'creds.update', 'other'), payload: fc.oneof(tie('value'), tie('baileysPayload')) }) },
    { weight: 6, arbitrary: fc.record({ fn: fc.constant('superviseSession'), id: tie('id'), maker: tie('maker'), policy: fc.option(tie('policy'), { freq: 4 }), nArgs: fc.constantFrom(2, 3) }) },
    { weight: 5, arbitrary: fc.record({ fn: fc.constant('handle'), index: fc.nat(7), op: fc.constantFrom('stop', 'restart', 'restart', 'supervision', 'stopTwice', 'restartTwice') }) },
    // A supervised socket opens and/or closes (Baileys' connection.update) with a status code.
    { weight: 3, arbitrary: fc.record({ fn: fc.constant('closeSupervised'), index: fc.nat(7), code: fc.constantFrom(515, 515, 428, 408, 401, 403, 411, 440, 500, 503, null), open: fc.boolean(), close: fc.constantFrom(true, true, true, false) }) },
    { weight: 3, arbitrary: fc.record({ fn: fc.constant('settleMade'), index: fc.nat(7), how: fc.constantFrom('resolve', 'resolve', 'reject', 'resolveNonSocket', 'resolvePool', 'resolveHostile') }) },
    { weight: 3, arbitrary: fc.record({ fn: fc.constant('pause'), ms: fc.constantFrom(0, 1, 3, 10, 25) }) },
    { weight: 1, arbitrary: fc.record({ fn: fc.constant('connectCluster'), options: tie('clusterOptions') }) },
    // The Cluster object's methods, in the runs that have one (a real redis-server, see the spec).
    {
      weight: 3,
      arbitrary: fc.record({
        fn: fc.constant('cluster'),
        op: fc.constantFrom('claim', 'claim', 'release', 'holds', 'whereIs', 'getStats', 'onStateChange'),
        id: tie('id'),
        options: fc.option(fc.oneof(tie('value'), fc.record({ waitMs: prim(fc.constantFrom(0, 1, 5, -1, NaN, 1e12, 86400001, '5')), takeover: prim(fc.constantFrom(true, false, 'yes', undefined)) }).map((r) => ({ t: 'entries', entries: [{ key: 'waitMs', v: r.waitMs, getter: false, cb: null }, { key: 'takeover', v: r.takeover, getter: false, cb: null }], extra: null, wrap: 'plain' }))), { freq: 2 }),
        listener: tie('callback')
      })
    },
    { weight: 1, arbitrary: fc.record({ fn: fc.constant('enum'), which: fc.constantFrom('SessionStatus', 'StateChangeType', 'RegistryErrorCode'), op: fc.constantFrom('read', 'set', 'delete', 'define'), v: tie('leaf') }) }
  ),
  id: fc.oneof(
    { weight: 6, arbitrary: idArb.map((v) => ({ t: 'prim', v })) },
    { weight: 3, arbitrary: fc.nat(7).map((index) => ({ t: 'registeredId', index })) },
    { weight: 2, arbitrary: tie('value') }
  ),
  sockArg: fc.oneof({ weight: 5, arbitrary: tie('socket') }, { weight: 2, arbitrary: fc.nat(7).map((index) => ({ t: 'poolSocket', index })) }, { weight: 2, arbitrary: tie('value') }),
  baileysPayload: fc.oneof(
    fc.record({
      t: fc.constant('object'),
      proto: fc.constant('object'),
      integrity: fc.constant('none'),
      props: fc.tuple(
        fc.record({ key: fc.constant('connection'), kind: fc.constantFrom('data', 'getter'), v: fc.constantFrom('open', 'close', 'connecting', 'bogus', undefined).map((v) => ({ t: 'prim', v })), cb: tie('callback') }),
        fc.record({
          key: fc.constant('lastDisconnect'),
          kind: fc.constant('data'),
          v: fc.oneof(tie('value'), fc.constantFrom(401, 408, 440, 515, 500, -1, 2 ** 53, NaN).map((code) => ({ t: 'boom', code }))),
          cb: tie('callback')
        }),
        fc.record({ key: fc.constantFrom('qr', 'isNewLogin', 'receivedPendingNotifications'), kind: fc.constantFrom('data', 'getter'), v: tie('value'), cb: tie('callback') })
      ).map((a) => [...a])
    }),
    fc.record({ t: fc.constant('upsert'), type: fc.constantFrom('notify', 'append', 'bogus'), messages: fc.array(tie('value'), { maxLength: 3 }), fromMe: fc.boolean() })
  )
}))

/** One fuzz run: a short sequence of calls, each possibly under a patched builtin. */
export const runArb = fc.array(
  fc.record({
    call: arbs.call,
    patch: fc.option(fc.record({ which: fc.oneof({ weight: 3, arbitrary: fc.constant('Map.prototype.set') }, { weight: 10, arbitrary: fc.constantFrom(...BUILTIN_PATCHES) }), name: fc.constantFrom(...PROTO_GETTER_NAMES), cb: arbs.callback, every: fc.constantFrom(1, 1, 2, 5) }), { freq: 3 })
  }),
  { minLength: 1, maxLength: 12 }
)
