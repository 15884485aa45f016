// Interoperability check: matrix-js-sdk clients syncing with Simplified Sliding Sync (MSC4186)
// instead of /v3/sync, against a homeserver.
//
// Usage: node sliding_sync.mjs <homeserver-url> [http-log-file]
//
// matrix-js-sdk 43 drives sliding sync with `new SlidingSync(baseUrl, lists, roomSubscriptionInfo,
// client, timeoutMs)` handed to `client.startClient({slidingSync})`; `client.slidingSync()` POSTs
// to /_matrix/client/unstable/org.matrix.simplified_msc3575/sync with `pos` and `timeout` in the
// query string. SlidingSyncSdk registers the to_device, e2ee (only with crypto initialised),
// account_data, typing, receipts and sticky-events extensions itself. The SDK ignores list `ops`:
// it learns the window from the rooms in the response and orders them by `bump_stamp`.
//
// Steps (each recorded in the summary as {ok, ms, detail|error}):
//   register          register alice and bob (m.login.dummy UIA)
//   create_rooms      alice creates 25 named rooms over the API, sends 15 history messages in
//                     one of them, then one message per room in a shuffled order
//   room_list         alice starts a sliding sync client (list "all": ranges [[0,19]],
//                     timeline_limit 1): 20 rooms, ordered by recent activity (bump_stamp),
//                     correct names and last messages, list count 25; time to the first list
//   open_room         alice subscribes to the most recent room with timeline_limit 10 and all
//                     state: the timeline grows to 10 events, with a prev_batch
//   scrollback        client.scrollback (/messages from prev_batch) back to m.room.create:
//                     all history messages in order
//   start_bob         bob starts a sliding sync client with Rust crypto (same list)
//   encrypted_room    alice creates an encrypted room inviting bob and subscribes to it; bob
//                     sees the invite (invite_state, via the list), joins and subscribes; both
//                     clients' room state shows bob joined and m.room.encryption
//   decrypt           alice sends an encrypted message; bob receives and decrypts it (to_device
//                     + e2ee extensions: room key, device lists, one-time key counts)
//   reply_decrypt     bob replies (encrypted); alice decrypts it
//   typing            alice's typing notifications (start, stop) reach bob (typing extension)
//   receipt           alice's read receipt on bob's reply (or, without one, on his join) reaches
//                     bob (receipts extension)
//
// typing and receipt run whenever bob's /join succeeded, so they test their extensions even
// when the clients' room state is wrong.
//
// The last stdout line is `INTEROP_SUMMARY <json>`. Exit code is non-zero iff `room_list` failed.

import { appendFileSync, writeFileSync } from "node:fs";
import * as sdk from "matrix-js-sdk";
import { logger as sdkLogger } from "matrix-js-sdk/lib/logger.js";
import { SlidingSync, SlidingSyncEvent, SlidingSyncState } from "matrix-js-sdk/lib/sliding-sync.js";

const baseUrl = (process.argv[2] || "").replace(/\/$/, "");
const httpLog = process.argv[3] || null;
if (!baseUrl) {
    console.error("usage: node sliding_sync.mjs <homeserver-url> [http-log-file]");
    process.exit(2);
}
const PASSWORD = "interop-password-1";
const STEP_TIMEOUT_MS = Number(process.env.INTEROP_STEP_TIMEOUT_MS || 10000);
const SS_PATH = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync";
const SS_TIMEOUT_MS = 10000; // long-poll timeout of the sliding sync requests
const ROOMS = 25;
const WINDOW = 20;
const HISTORY = 15; // extra messages in the room that is opened and paginated
const OPEN_TIMELINE_LIMIT = 10;

sdkLogger.setLevel(process.env.INTEROP_SDK_LOG || "warn");

if (httpLog) writeFileSync(httpLog, "");

// ---- HTTP traffic logging (every request; bodies of non-2xx responses and sliding syncs) ----
const httpFailures = [];
const expectedErrors = [];
const slidingResponses = { alice: [], bob: [] }; // [{t, query, request, response}] per client
let reqCounter = 0;
function makeLoggingFetch(label) {
    return async (input, init = {}) => {
        const n = ++reqCounter;
        const url = input instanceof URL ? input.href : typeof input === "string" ? input : input.url;
        const method = (init.method || (typeof input === "object" && input.method) || "GET").toUpperCase();
        const path = new URL(url).pathname;
        const reqBody = typeof init.body === "string" ? init.body : init.body ? "<binary>" : "";
        const t0 = Date.now();
        let res;
        try {
            res = await fetch(input, init);
        } catch (err) {
            // sliding sync requests are aborted whenever lists/subscriptions change
            if (httpLog) appendFileSync(httpLog, `#${n} [${label}] ${method} ${url} -> NETWORK ERROR ${err}\n`);
            throw err;
        }
        const ms = Date.now() - t0;
        let line = `#${n} [${label}] ${method} ${url} -> ${res.status} (${ms} ms)`;
        if (path === SS_PATH && res.ok) {
            // keep the wire data: the SDK does not expose ops, limited, expanded_timeline...
            const body = await res.clone().text().catch(() => "");
            let json = null;
            try { json = JSON.parse(body); } catch { /* ignore */ }
            (slidingResponses[label] ??= []).push({ t0, ms, query: new URL(url).search, request: JSON.parse(reqBody || "{}"), response: json });
            line += `\n    request: ${reqBody.slice(0, 3000)}\n    response: ${body.slice(0, 6000)}`;
        }
        if (!res.ok) {
            const body = await res.clone().text().catch(() => "<unreadable>");
            line += `\n    request: ${reqBody.slice(0, 2000)}\n    response: ${body.slice(0, 2000)}`;
            const uiaLeg = res.status === 401 && body.includes('"flows"');
            const expected = uiaLeg || (res.status === 404 && (path.endsWith("/room_keys/version") || (path.includes("/unstable/") && path !== SS_PATH)));
            if (expected) expectedErrors.push(`${method} ${path} -> ${res.status}`);
            else httpFailures.push({ label, method, url, status: res.status, request: reqBody.slice(0, 500), response: body.slice(0, 500) });
        }
        if (httpLog) appendFileSync(httpLog, line + "\n");
        return res;
    };
}

// ---- helpers ----
const summary = { homeserver: baseUrl, sdk_version: null, steps: {}, http_failures: httpFailures, expected_http_errors: expectedErrors };
try {
    const { createRequire } = await import("node:module");
    summary.sdk_version = createRequire(import.meta.url)("matrix-js-sdk/package.json").version;
} catch { /* ignore */ }
summary.node_version = process.version;

async function step(name, fn) {
    const t0 = Date.now();
    try {
        const detail = await fn();
        summary.steps[name] = { ok: true, ms: Date.now() - t0, ...(detail ? { detail } : {}) };
        return true;
    } catch (err) {
        summary.steps[name] = { ok: false, ms: Date.now() - t0, error: String(err && err.stack ? err.stack : err).slice(0, 2500) };
        return false;
    }
}

function withTimeout(promise, what, ms = STEP_TIMEOUT_MS) {
    let timer;
    return Promise.race([
        promise.finally(() => clearTimeout(timer)),
        new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`timeout after ${ms} ms: ${what}`)), ms); }),
    ]);
}

async function waitFor(what, predicate, ms = STEP_TIMEOUT_MS, interval = 50) {
    const deadline = Date.now() + ms;
    for (;;) {
        const v = await predicate();
        if (v) return v;
        if (Date.now() > deadline) throw new Error(`timeout after ${ms} ms: ${what}`);
        await new Promise((r) => setTimeout(r, interval));
    }
}

async function api(method, path, token, body) {
    const res = await makeLoggingFetch("raw")(`${baseUrl}${path}`, {
        method,
        headers: { "Content-Type": "application/json", ...(token ? { Authorization: `Bearer ${token}` } : {}) },
        body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    let json;
    try { json = JSON.parse(text); } catch { json = { raw: text }; }
    return { status: res.status, json };
}

async function apiOk(method, path, token, body) {
    const r = await api(method, path, token, body);
    if (r.status !== 200) throw new Error(`${method} ${path}: ${r.status} ${JSON.stringify(r.json).slice(0, 500)}`);
    return r.json;
}

async function register(localpart) {
    const body = { username: localpart, password: PASSWORD, initial_device_display_name: `${localpart} js sliding`, auth: { type: "m.login.dummy" } };
    let r = await api("POST", "/_matrix/client/v3/register", null, body);
    if (r.status === 401 && r.json.session) {
        r = await api("POST", "/_matrix/client/v3/register", null, { ...body, auth: { type: "m.login.dummy", session: r.json.session } });
    }
    if (r.status !== 200) throw new Error(`register ${localpart}: ${r.status} ${JSON.stringify(r.json)}`);
    return r.json; // {user_id, access_token, device_id}
}

let txn = 0;
async function sendText(token, roomId, body) {
    const path = `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/send/m.room.message/ss${Date.now()}.${++txn}`;
    return (await apiOk("PUT", path, token, { msgtype: "m.text", body })).event_id;
}

// Room-list state in the style of Element Web's SlidingSyncManager; opened rooms get everything.
const LIST_REQUIRED_STATE = [
    ["m.room.join_rules", ""], ["m.room.avatar", ""], ["m.room.tombstone", ""], ["m.room.encryption", ""],
    ["m.room.create", ""], ["m.room.name", ""], ["m.room.member", "$ME"], ["m.room.member", "$LAZY"],
];
const OPEN_ROOM_SUBSCRIPTION = { timeline_limit: OPEN_TIMELINE_LIMIT, required_state: [["*", "*"]] };

/**
 * A client with Rust crypto, syncing with sliding sync: one list "all" over the first WINDOW
 * rooms. Resolves once the first sliding sync response has been processed, with the time from
 * startClient() to then (which includes the SDK's /versions, /capabilities and /pushrules calls
 * before its first sliding sync request).
 */
async function makeSlidingClient(label, creds) {
    const client = sdk.createClient({
        baseUrl,
        userId: creds.user_id,
        accessToken: creds.access_token,
        deviceId: creds.device_id,
        fetchFn: makeLoggingFetch(label),
        timelineSupport: true,
    });
    await client.initRustCrypto({ useIndexedDB: false });
    const lists = new Map([["all", { ranges: [[0, WINDOW - 1]], timeline_limit: 1, required_state: LIST_REQUIRED_STATE }]]);
    const slidingSync = new SlidingSync(baseUrl, lists, OPEN_ROOM_SUBSCRIPTION, client, SS_TIMEOUT_MS);
    let t0 = 0;
    const errors = []; // failed requests before the first list (the SDK retries them)
    const firstList = new Promise((resolve) => {
        const onLifecycle = (state, resp, err) => {
            if (state === SlidingSyncState.RequestFinished && err) errors.push(`${err.httpStatus ?? ""} ${err.message ?? err}`);
            if (state === SlidingSyncState.Complete && resp?.lists?.all) {
                slidingSync.off(SlidingSyncEvent.Lifecycle, onLifecycle);
                resolve({ ms: Date.now() - t0, resp });
            }
        };
        slidingSync.on(SlidingSyncEvent.Lifecycle, onLifecycle);
    });
    const prepared = new Promise((resolve, reject) => {
        const onSync = (state, _prev, data) => {
            if (state === "PREPARED" || state === "SYNCING") { client.off(sdk.ClientEvent.Sync, onSync); resolve(); }
            if (state === "ERROR") { client.off(sdk.ClientEvent.Sync, onSync); reject(new Error(`${label} sync error: ${data?.error}`)); }
        };
        client.on(sdk.ClientEvent.Sync, onSync);
    });
    t0 = Date.now();
    await client.startClient({ slidingSync });
    const first = await withTimeout(firstList, `${label} first sliding sync list`).catch((err) => {
        throw new Error(`${err.message}; failed requests: ${JSON.stringify(errors)}`);
    });
    await withTimeout(prepared, `${label} sync PREPARED`);
    return { client, slidingSync, firstListMs: first.ms, firstResp: first.resp };
}

/** Wait until `client` has the event with the given id in `roomId`, decrypted, and return it. */
async function waitForDecryptedEvent(client, roomId, eventId, what) {
    return waitFor(what, async () => {
        const room = client.getRoom(roomId);
        const ev = room?.findEventById(eventId);
        if (!ev) return null;
        if (ev.isBeingDecrypted()) return null;
        if (ev.isDecryptionFailure()) {
            await client.decryptEventIfNeeded(ev, { isRetry: true });
            return null;
        }
        return ev.getType() === "m.room.message" ? ev : null;
    });
}

/** The first sliding sync response of `label` since `since` with timeline events for `roomId`. */
function firstWireTimeline(label, roomId, since = 0) {
    const hit = slidingResponses[label].find((r) => r.t0 >= since && r.response?.rooms?.[roomId]?.timeline?.length);
    return hit ? hit.response.rooms[roomId] : null;
}

/** Wait until every condition holds or `ms` pass; return the names of those that do not hold. */
async function waitAll(conds, ms = STEP_TIMEOUT_MS, interval = 50) {
    const deadline = Date.now() + ms;
    for (;;) {
        const unmet = [];
        for (const [name, fn] of Object.entries(conds)) if (!(await fn())) unmet.push(name);
        if (!unmet.length || Date.now() > deadline) return unmet;
        await new Promise((r) => setTimeout(r, interval));
    }
}

/** Per sliding sync response of `label` with data for `roomId`: which state came in
 * `required_state` and which state events came only in `timeline`. */
function wireStateSummary(label, roomId, since = 0) {
    const key = (e) => `${e.type}|${e.state_key}`;
    return slidingResponses[label].filter((r) => r.t0 >= since && r.response?.rooms?.[roomId]).map((r) => {
        const room = r.response.rooms[roomId];
        return {
            pos: new URLSearchParams(r.query).get("pos"),
            ...(room.initial ? { initial: true } : {}),
            ...(room.invite_state ? { invite_state: room.invite_state.length } : {}),
            required_state: (room.required_state ?? []).map(key),
            timeline_state: (room.timeline ?? []).filter((e) => e.state_key !== undefined).map(key),
        };
    });
}

const timelineBodies = (room) => room.getLiveTimeline().getEvents()
    .filter((e) => e.getType() === "m.room.message").map((e) => e.getContent().body);

// ---- the scenario ----
const suffix = `${Date.now().toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}`;
let aliceCreds, bobCreds, alice, aliceSS, bob, bobSS, encRoomId, helloEventId, replyEventId;
const clients = [];
const rooms = []; // [{roomId, name}] in creation order
let expectedOrder = []; // room IDs, most recent activity first
let openRoomId;

await step("register", async () => {
    aliceCreds = await register(`alice_${suffix}`);
    bobCreds = await register(`bob_${suffix}`);
    return { alice: `${aliceCreds.user_id}/${aliceCreds.device_id}`, bob: `${bobCreds.user_id}/${bobCreds.device_id}` };
}) &&
await step("create_rooms", async () => {
    const token = aliceCreds.access_token;
    for (let i = 0; i < ROOMS; i++) {
        const name = `SS room ${String(i).padStart(2, "0")}`;
        const r = await apiOk("POST", "/_matrix/client/v3/createRoom", token, { name, preset: "private_chat" });
        rooms.push({ roomId: r.room_id, name, index: i });
    }
    // Send the per-room messages in an order unrelated to creation, so recent-activity order is
    // neither creation order nor its reverse: (k*7 + 3) mod 25 is a permutation of 0..24.
    const sendOrder = Array.from({ length: ROOMS }, (_, k) => rooms[(k * 7 + 3) % ROOMS]);
    // The room that will be opened is the one with the newest activity: give it history first.
    openRoomId = sendOrder[sendOrder.length - 1].roomId;
    for (let h = 0; h < HISTORY; h++) await sendText(token, openRoomId, `history ${h}`);
    for (const room of sendOrder) {
        room.lastBody = `last message in ${room.name}`;
        room.lastEventId = await sendText(token, room.roomId, room.lastBody);
    }
    expectedOrder = sendOrder.map((r) => r.roomId).reverse();
    return { rooms: rooms.length, openRoom: openRoomId, expectedTop3: expectedOrder.slice(0, 3).map((id) => rooms.find((r) => r.roomId === id).name) };
});

const listOk = summary.steps.create_rooms?.ok === true && await step("room_list", async () => {
    const made = await makeSlidingClient("alice", aliceCreds);
    ({ client: alice, slidingSync: aliceSS } = made);
    clients.push(alice);
    summary.first_list_ms = made.firstListMs;
    const firstHttp = slidingResponses.alice[0];
    summary.first_list_http_ms = firstHttp?.ms ?? null;
    const resp = made.firstResp;
    const problems = [];
    const count = aliceSS.getListData("all")?.joinedCount;
    if (count !== ROOMS) problems.push(`list count ${count}, expected ${ROOMS}`);
    if (resp.lists.all.count !== ROOMS) problems.push(`wire list count ${resp.lists.all.count}`);
    const byId = new Map(rooms.map((r) => [r.roomId, r]));
    const wireIds = Object.keys(resp.rooms);
    if (wireIds.length !== WINDOW) problems.push(`first response has ${wireIds.length} rooms, expected ${WINDOW}`);
    // what the SDK shows: its rooms, ordered by bump_stamp (the SDK ignores list ops)
    const shown = alice.getRooms().slice().sort((a, b) => (b.getBumpStamp() ?? 0) - (a.getBumpStamp() ?? 0));
    const shownIds = shown.map((r) => r.roomId);
    const want = expectedOrder.slice(0, WINDOW);
    if (shown.length !== WINDOW) problems.push(`client has ${shown.length} rooms, expected ${WINDOW}`);
    if (JSON.stringify(shownIds) !== JSON.stringify(want)) {
        problems.push(`client order (by bump_stamp) ${JSON.stringify(shown.map((r) => byId.get(r.roomId)?.name ?? r.roomId))} != expected ${JSON.stringify(want.map((id) => byId.get(id).name))}`);
    }
    const stamps = shown.map((r) => r.getBumpStamp());
    if (new Set(stamps).size !== stamps.length || stamps.some((s) => typeof s !== "number")) problems.push(`bump_stamps not distinct numbers: ${JSON.stringify(stamps)}`);
    for (const room of shown) {
        const exp = byId.get(room.roomId);
        if (!exp) { problems.push(`unexpected room ${room.roomId}`); continue; }
        if (room.name !== exp.name) problems.push(`${room.roomId}: name ${JSON.stringify(room.name)} != ${JSON.stringify(exp.name)}`);
        if (room.getMyMembership() !== "join") problems.push(`${exp.name}: membership ${room.getMyMembership()}`);
        const events = room.getLiveTimeline().getEvents();
        const last = events[events.length - 1];
        if (events.length !== 1 || last.getId() !== exp.lastEventId || last.getContent().body !== exp.lastBody) {
            problems.push(`${exp.name}: timeline ${JSON.stringify(events.map((e) => [e.getType(), e.getContent().body]))}, expected only ${JSON.stringify(exp.lastBody)}`);
        }
    }
    // the unstable shape also carries Synapse-style SYNC ops; the SDK ignores them, but check them
    const ops = resp.lists.all.ops;
    const opIds = Array.isArray(ops) ? ops.flatMap((op) => op.room_ids ?? []) : null;
    if (opIds && JSON.stringify(opIds) !== JSON.stringify(want)) problems.push(`list ops room_ids out of order: ${JSON.stringify(opIds.map((id) => byId.get(id)?.name ?? id))}`);
    if (problems.length) throw new Error(problems.join("\n"));
    return {
        count, firstListMs: made.firstListMs, firstListHttpMs: summary.first_list_http_ms,
        top5: shown.slice(0, 5).map((r) => `${r.name} (bump_stamp ${r.getBumpStamp()})`),
        opsChecked: opIds !== null,
    };
});

if (listOk) {
    const openOk = await step("open_room", async () => {
        const since = Date.now();
        aliceSS.modifyRoomSubscriptions(new Set([openRoomId]));
        const room = alice.getRoom(openRoomId);
        await waitFor("opened room timeline grows", () => room.getLiveTimeline().getEvents().length >= OPEN_TIMELINE_LIMIT);
        const wire = firstWireTimeline("alice", openRoomId, since);
        const events = room.getLiveTimeline().getEvents();
        const bodies = timelineBodies(room);
        const expectedTail = [...Array.from({ length: OPEN_TIMELINE_LIMIT - 1 }, (_, k) => `history ${HISTORY - OPEN_TIMELINE_LIMIT + 1 + k}`), rooms.find((r) => r.roomId === openRoomId).lastBody];
        if (JSON.stringify(bodies) !== JSON.stringify(expectedTail)) throw new Error(`timeline after opening: ${JSON.stringify(bodies)}, expected ${JSON.stringify(expectedTail)}`);
        const token = room.getLiveTimeline().getPaginationToken(sdk.Direction.Backward);
        if (!token) throw new Error(`no back-pagination token after opening; wire: ${JSON.stringify(wire && { limited: wire.limited, prev_batch: wire.prev_batch, expanded: wire.unstable_expanded_timeline, initial: wire.initial })}`);
        // the subscription asks for all state, the list only for a few types
        const missingState = ["m.room.power_levels", "m.room.history_visibility", "m.room.join_rules", "m.room.create"]
            .filter((t) => !room.currentState.getStateEvents(t, ""));
        if (missingState.length) throw new Error(`state missing after opening with [["*","*"]]: ${missingState}`);
        return {
            events: events.length, paginationToken: token, wire: wire && { limited: wire.limited, prev_batch: wire.prev_batch, unstable_expanded_timeline: wire.unstable_expanded_timeline ?? null, initial: wire.initial ?? null, timeline: wire.timeline?.length, required_state: wire.required_state?.length },
        };
    });

    await step("scrollback", async () => {
        if (!openOk) throw new Error("skipped: open_room failed");
        const room = alice.getRoom(openRoomId);
        const before = room.getLiveTimeline().getEvents().length;
        const first = await withTimeout(alice.scrollback(room, 10), "scrollback");
        const afterFirst = first.getLiveTimeline().getEvents().length;
        if (afterFirst <= before) throw new Error(`scrollback added no events (${before} -> ${afterFirst})`);
        let rounds = 1;
        while (room.oldState.paginationToken !== null && rounds < 10) {
            await withTimeout(alice.scrollback(room, 10), "scrollback");
            rounds++;
        }
        const events = room.getLiveTimeline().getEvents();
        const bodies = timelineBodies(room);
        const expected = [...Array.from({ length: HISTORY }, (_, h) => `history ${h}`), rooms.find((r) => r.roomId === openRoomId).lastBody];
        if (JSON.stringify(bodies) !== JSON.stringify(expected)) throw new Error(`messages after scrollback: ${JSON.stringify(bodies)}`);
        if (events[0].getType() !== "m.room.create") throw new Error(`timeline does not start with m.room.create: ${events[0].getType()}`);
        const ids = events.map((e) => e.getId());
        if (new Set(ids).size !== ids.length) throw new Error("duplicate events in the timeline after scrollback");
        return { before, afterFirstScrollback: afterFirst, total: events.length, rounds, first: events[0].getType() };
    });

    const bobOk = await step("start_bob", async () => {
        const made = await makeSlidingClient("bob", bobCreds);
        ({ client: bob, slidingSync: bobSS } = made);
        clients.push(bob);
        const count = bobSS.getListData("all")?.joinedCount;
        if (count !== 0) throw new Error(`bob's list count ${count}, expected 0`);
        return { firstListMs: made.firstListMs, crypto: await bob.getCrypto().getVersion() };
    });

    let bobJoined = false; // bob's /join succeeded (whatever his client makes of it)
    const encOk = bobOk && await step("encrypted_room", async () => {
        const res = await alice.createRoom({
            name: "SS encrypted",
            invite: [bob.getUserId()],
            initial_state: [{ type: "m.room.encryption", state_key: "", content: { algorithm: "m.megolm.v1.aes-sha2" } }],
        });
        encRoomId = res.room_id;
        // "open" it on alice's side too: all state (members) and a longer timeline
        aliceSS.modifyRoomSubscriptions(new Set([openRoomId, encRoomId]));
        await waitFor("bob sees the invite (list)", () => bob.getRoom(encRoomId)?.getMyMembership() === "invite");
        const inviteName = bob.getRoom(encRoomId).name;
        const joinedAt = Date.now();
        await bob.joinRoom(encRoomId);
        bobJoined = true;
        bobSS.modifyRoomSubscriptions(new Set([encRoomId]));
        // What the clients need before alice can encrypt for bob: room state, as sent in
        // `required_state` (the SDK does not apply state events of the timeline to room state).
        const unmet = await waitAll({
            "bob's membership is join": () => bob.getRoom(encRoomId)?.getMyMembership() === "join",
            "bob's room has m.room.encryption state": () => bob.getRoom(encRoomId)?.hasEncryptionStateEvent(),
            "alice sees bob joined": () => alice.getRoom(encRoomId)?.getMember(bob.getUserId())?.membership === "join",
            "alice's room has m.room.encryption state": () => alice.getRoom(encRoomId)?.hasEncryptionStateEvent(),
            "alice's crypto: room encrypted": () => alice.getCrypto().isEncryptionEnabledInRoom(encRoomId),
            "bob's crypto: room encrypted": () => bob.getCrypto().isEncryptionEnabledInRoom(encRoomId),
        }, 8000);
        if (unmet.length) {
            throw new Error(`unmet after 8 s: ${JSON.stringify(unmet)}\n` +
                `alice's wire data for the room: ${JSON.stringify(wireStateSummary("alice", encRoomId))}\n` +
                `bob's wire data for the room since his join: ${JSON.stringify(wireStateSummary("bob", encRoomId, joinedAt))}`);
        }
        return { roomId: encRoomId, inviteName, bobListCount: bobSS.getListData("all")?.joinedCount };
    });

    const decryptOk = encOk && await step("decrypt", async () => {
        const sent = await withTimeout(alice.sendTextMessage(encRoomId, "hello over sliding sync"), "alice sends");
        helloEventId = sent.event_id;
        const ev = await waitForDecryptedEvent(bob, encRoomId, helloEventId, "bob decrypts hello");
        if (!ev.isEncrypted()) throw new Error("event was not encrypted on the wire");
        const body = ev.getContent().body;
        if (body !== "hello over sliding sync") throw new Error(`unexpected body ${JSON.stringify(body)}`);
        // which extension data bob got
        const e2ee = slidingResponses.bob.map((r) => r.response?.extensions?.e2ee).filter(Boolean);
        const toDevice = slidingResponses.bob.flatMap((r) => r.response?.extensions?.to_device?.events ?? []);
        return {
            eventId: helloEventId, wireType: ev.getWireType(), body,
            bobToDeviceTypes: [...new Set(toDevice.map((e) => e.type))],
            bobOtkCounts: e2ee.map((x) => x.device_one_time_keys_count?.signed_curve25519).filter((x) => x !== undefined).slice(-1)[0] ?? null,
        };
    });

    const replyOk = decryptOk && await step("reply_decrypt", async () => {
        const sent = await withTimeout(bob.sendTextMessage(encRoomId, "reply from bob"), "bob sends");
        replyEventId = sent.event_id;
        const ev = await waitForDecryptedEvent(alice, encRoomId, replyEventId, "alice decrypts bob's reply");
        if (ev.getContent().body !== "reply from bob") throw new Error(`unexpected body ${JSON.stringify(ev.getContent())}`);
        return { eventId: replyEventId, wireType: ev.getWireType() };
    });

    await step("typing", async () => {
        if (!bobJoined) throw new Error("skipped: bob did not join the room");
        const seen = []; // m.typing user_ids as bob receives them
        const memberTyping = []; // RoomMember.typing of alice in bob's room (what a UI shows)
        const onEvent = (ev) => { if (ev.getType() === "m.typing" && ev.getRoomId() === encRoomId) seen.push(ev.getContent().user_ids); };
        const onMemberTyping = (_ev, member) => { if (member.roomId === encRoomId && member.userId === alice.getUserId()) memberTyping.push(member.typing); };
        bob.on(sdk.ClientEvent.Event, onEvent);
        bob.on(sdk.RoomMemberEvent.Typing, onMemberTyping);
        try {
            await alice.sendTyping(encRoomId, true, 20000);
            await waitFor("bob gets alice's typing notification", () => seen.some((ids) => ids?.includes(alice.getUserId())));
            await alice.sendTyping(encRoomId, false);
            await waitFor("bob sees alice stop typing", () => seen.length > 0 && !seen[seen.length - 1]?.includes(alice.getUserId()));
            // RoomMember.typing (what a UI shows) also needs alice's member event in bob's room
            // state, which is encrypted_room's business: reported, not required here.
            return { typingEvents: seen, memberTyping };
        } finally {
            bob.off(sdk.ClientEvent.Event, onEvent);
            bob.off(sdk.RoomMemberEvent.Typing, onMemberTyping);
        }
    });

    await step("receipt", async () => {
        if (!bobJoined) throw new Error("skipped: bob did not join the room");
        const aliceRoom = alice.getRoom(encRoomId);
        // alice reads bob's reply, or else bob's latest event she has (his join)
        const target = replyEventId ? aliceRoom.findEventById(replyEventId)
            : aliceRoom.getLiveTimeline().getEvents().filter((e) => e.getSender() === bob.getUserId()).at(-1);
        if (!target) throw new Error("alice has no event of bob's to mark as read");
        await alice.sendReadReceipt(target);
        const bobRoom = bob.getRoom(encRoomId);
        const receipt = await waitFor("bob gets alice's read receipt",
            () => { const r = bobRoom.getReadReceiptForUserId(alice.getUserId(), true); return r?.eventId === target.getId() ? r : null; });
        return { eventId: receipt.eventId, eventType: target.getType(), ts: receipt.data?.ts ?? null };
    });
}

for (const c of clients) {
    try { c.stopClient(); } catch { /* ignore */ }
}
summary.passed = Object.entries(summary.steps).filter(([, s]) => s.ok).map(([k]) => k);
summary.failed = Object.entries(summary.steps).filter(([, s]) => !s.ok).map(([k]) => k);
console.log("INTEROP_SUMMARY " + JSON.stringify(summary));
process.exit(listOk ? 0 : 1);
