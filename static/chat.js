// The chat page: create a user, pick a room, chat over a WebSocket.
//
// Rules this file keeps:
// - Text from users (names, room names, messages, server reasons) is only
//   ever put on the page with textContent, never as HTML.
// - Join over HTTP first, then open the socket (the server refuses sockets
//   for unknown users or rooms with close code 4004).
// - A dropped socket reconnects with growing delays and asks for
//   `since=<last seq shown>`, so nothing is lost and nothing shows twice.
"use strict";

const STORAGE_KEY = "chat.user";
const HISTORY_LIMIT = 50;
const RECONNECT_FIRST_DELAY_MS = 500;
const RECONNECT_MAX_DELAY_MS = 10000;
const NEAR_BOTTOM_PX = 80;
const AUTHOR_COLORS = 8;

const state = {
  user: null,            // {id, username, token}, as kept in localStorage
  room: null,            // {id, name} of the room we are in, or null
  socket: null,          // the live WebSocket; closes of older ones are ignored
  lastSeq: 0,            // highest message seq shown in this room
  firstSeq: 0,           // lowest one, where "Show earlier messages" pages back from
  reconnectAttempt: 0,
  reconnectTimer: null,
  connectedOnce: false,  // tells "joined" apart from "reconnected"
  presenceAsked: 0,      // numbers presence requests: only the latest one's answer is shown
};

let ui = {};

// ---------------------------------------------------------------- helpers

function byId(id) {
  return document.getElementById(id);
}

// Builds an element whose content is plain text, never parsed as HTML.
function textElement(tag, className, text) {
  const element = document.createElement(tag);
  if (className) element.className = className;
  if (text !== undefined) element.textContent = text;
  return element;
}

function formatTime(isoTimestamp) {
  const date = new Date(isoTimestamp);
  if (Number.isNaN(date.getTime())) return "";
  const time = date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  if (date.toDateString() === new Date().toDateString()) return time;
  return date.toLocaleDateString([], { day: "numeric", month: "short" }) + " " + time;
}

// Same user, same colour, on every screen.
function authorColorClass(userId) {
  let hash = 0;
  for (const char of String(userId)) hash = (hash * 31 + char.charCodeAt(0)) >>> 0;
  return "author-color-" + (hash % AUTHOR_COLORS);
}

// ---------------------------------------------------------------- HTTP

class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;  // 0 means the server could not be reached
    this.detail = detail;
  }
}

async function api(method, path, body, token) {
  const options = { method, headers: {} };
  if (token) options.headers["Authorization"] = "Bearer " + token;
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, options);
  } catch (networkError) {
    throw new ApiError(0, "The server cannot be reached");
  }
  // A proxy in front of the server may answer with HTML; don't trust the body.
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    const detail = data && typeof data.detail === "string" ? data.detail : response.statusText;
    throw new ApiError(response.status, detail || "HTTP " + response.status);
  }
  return data;
}

function roomPath(roomId, rest) {
  return "/rooms/" + encodeURIComponent(roomId) + (rest || "");
}

// A room's history and presence are for its members when the server requires tokens.
function readRoom(room, rest) {
  return api("GET", roomPath(room.id, rest), undefined, state.user && state.user.token);
}

// ---------------------------------------------------------------- notices

// One place for anything the person needs to read or act on. `tag` lets a
// later event clear only its own notice (a reconnect clears "connection lost"
// but not "username too short").
function showNotice(text, { kind = "error", tag = "", actions = [] } = {}) {
  ui.noticeText.textContent = text;
  ui.noticeActions.replaceChildren();
  for (const action of actions) {
    const button = textElement("button", "secondary", action.label);
    button.type = "button";
    button.addEventListener("click", action.onClick);
    ui.noticeActions.append(button);
  }
  ui.notice.className = "notice notice-" + kind;
  ui.notice.dataset.tag = tag;
  ui.notice.hidden = false;
}

function clearNotice(tag) {
  if (tag === undefined || ui.notice.dataset.tag === tag) ui.notice.hidden = true;
}

function showUnreachable(whatFailed) {
  showNotice(
    whatFailed + ": the server cannot be reached. Check that it is running and that you are online, then try again.",
    { tag: "unreachable" },
  );
}

function showApiError(error, whatFailed) {
  if (error.status === 0) showUnreachable(whatFailed);
  else showNotice(whatFailed + ": " + error.detail, { tag: "api" });
}

function showRoomNotFound() {
  showNotice(
    "This room does not exist on this server (Room not found). The link may be old or from another server. " +
      "Load the rooms and join one of them, or create a new room.",
    { tag: "room", actions: [{ label: "Load rooms", onClick: () => { clearNotice(); loadRooms(); } }] },
  );
}

// The server does not know the saved user (a new database, another server):
// say so and let the person choose, rather than silently making a new user.
function showUserNotRecognised(why) {
  const name = state.user ? state.user.username : "";
  const roomToRetry = state.room;
  showNotice(why + " Create a new user to keep chatting.", {
    tag: "user",
    actions: [
      { label: "Create new user “" + name + "”", onClick: () => replaceUser(name, roomToRetry) },
      { label: "Choose another name", onClick: () => { clearNotice(); forgetUser(); } },
    ],
  });
}

function showUserNotFound() {
  const name = state.user ? state.user.username : "";
  showUserNotRecognised(
    "This server does not know your saved user “" + name + "” (User not found); its database may have been reset.",
  );
}

function showUnauthorized() {
  const name = state.user ? state.user.username : "";
  showUserNotRecognised(
    "The server did not accept the saved token for “" + name + "” (Unauthorized); it may come from another server.",
  );
}

function showOriginRefused() {
  showNotice(
    "This server does not accept chat connections from this page's address (" + location.origin +
      "). Whoever runs the server can allow it in CORS_ORIGINS.",
    { tag: "origin" },
  );
}

// ---------------------------------------------------------------- the user

function loadSavedUser() {
  try {
    const saved = JSON.parse(localStorage.getItem(STORAGE_KEY));
    if (saved && typeof saved.id === "string" && typeof saved.username === "string") return saved;
  } catch (badJson) {
    // Treat an unreadable entry like no entry.
  }
  return null;
}

function saveUser(user) {
  state.user = { id: user.id, username: user.username, token: user.token || null };
  writeStorage(JSON.stringify(state.user));
  renderUser();
}

// Storage can be switched off or full; the page still works for this visit.
function writeStorage(value) {
  try {
    if (value === null) localStorage.removeItem(STORAGE_KEY);
    else localStorage.setItem(STORAGE_KEY, value);
  } catch (storageOff) {
    showNotice("This browser does not let the page remember you; after a reload you will need a new user.", {
      kind: "info",
      tag: "storage",
    });
  }
}

function saveToken(token) {
  if (state.user && typeof token === "string" && token) saveUser({ ...state.user, token });
}

function forgetUser() {
  leaveRoom();
  state.user = null;
  writeStorage(null);
  renderUser();
  ui.usernameInput.focus();
}

function renderUser() {
  const signedIn = state.user !== null;
  ui.userForm.hidden = signedIn;
  ui.whoami.hidden = !signedIn;
  ui.whoamiName.textContent = signedIn ? state.user.username : "";
  ui.userHint.textContent = signedIn
    ? "Now pick a room below."
    : "Your user is remembered in this browser.";
  ui.userPanel.classList.toggle("done", signedIn);
}

async function createUser(username) {
  try {
    saveUser(await api("POST", "/users", { username }));
    clearNotice();
    return true;
  } catch (error) {
    showApiError(error, "Could not create the user");
    return false;
  }
}

// Used when the saved user is unknown to the server: make a fresh one and
// go back into the room we were trying to join.
async function replaceUser(username, roomToRetry) {
  clearNotice();
  leaveRoom();
  if ((await createUser(username)) && roomToRetry) await joinRoom(roomToRetry);
}

function askToSwitchUser() {
  const name = state.user.username;
  showNotice(
    "Forget “" + name + "” in this browser? Its token is not shown again, so you would come back as a new user.",
    {
      kind: "info",
      tag: "switch",
      actions: [
        { label: "Forget “" + name + "”", onClick: () => { clearNotice(); forgetUser(); } },
        { label: "Cancel", onClick: () => clearNotice() },
      ],
    },
  );
}

// ---------------------------------------------------------------- rooms

async function loadRooms() {
  ui.roomsHint.textContent = "Loading rooms…";
  try {
    renderRooms(await api("GET", "/rooms"));
    clearNotice("unreachable");
  } catch (error) {
    ui.roomsHint.textContent = "Rooms could not be loaded.";
    showApiError(error, "Could not load the rooms");
  }
}

function renderRooms(rooms) {
  ui.roomList.replaceChildren();
  for (const room of rooms) ui.roomList.append(roomListItem(room));
  ui.roomsHint.textContent = rooms.length === 0
    ? "No rooms yet: create the first one."
    : rooms.length + (rooms.length === 1 ? " room" : " rooms");
  markCurrentRoom();
}

function roomListItem(room) {
  const item = textElement("li", "room");
  item.dataset.roomId = room.id;
  const members = Array.isArray(room.users) ? room.users.length : 0;
  const label = textElement("div", "room-label");
  label.append(
    textElement("span", "room-name", room.name),
    textElement("span", "room-meta", members + (members === 1 ? " member" : " members")),
  );
  const join = textElement("button", "join-button", "Join");
  join.type = "button";
  join.addEventListener("click", () => joinRoom({ id: room.id, name: room.name }));
  item.append(label, join);
  return item;
}

function markCurrentRoom() {
  for (const item of ui.roomList.children) {
    const isCurrent = state.room !== null && item.dataset.roomId === state.room.id;
    item.classList.toggle("current", isCurrent);
    const button = item.querySelector(".join-button");
    button.textContent = isCurrent ? "Joined" : "Join";
    button.disabled = isCurrent;
  }
}

async function createRoom(name) {
  try {
    const room = await api("POST", "/rooms", { name });
    clearNotice();
    await loadRooms();
    ui.roomsHint.textContent = "Room “" + room.name + "” created: press Join to enter it.";
    return true;
  } catch (error) {
    showApiError(error, "Could not create the room");
    return false;
  }
}

// ---------------------------------------------------------------- joining

async function joinRoom(room) {
  if (state.user === null) {
    showNotice("First create a user (step 1), then join a room.", { kind: "info", tag: "need-user" });
    ui.usernameInput.focus();
    return;
  }
  leaveRoom();
  clearNotice();
  enterRoom(room);
  setStatus("connecting", "Joining…");

  try {
    const body = { user_id: state.user.id, username: state.user.username };
    if (state.user.token) body.token = state.user.token;
    const joined = await api("POST", roomPath(room.id, "/join"), body);
    saveToken(joined && joined.token);  // only present when the server created the user
  } catch (error) {
    if (state.room === room) failJoin(error);
    return;
  }
  if (state.room !== room) return;  // another room was picked meanwhile

  try {
    const history = await readRoom(room, "/messages?limit=" + HISTORY_LIMIT);
    if (state.room !== room) return;
    for (const message of history) showMessage(message);
    offerEarlier(history);
  } catch (error) {
    if (state.room !== room) return;
    // The socket's since=0 replay still brings the messages; just say so.
    showNotice("The history could not be loaded; new messages still appear.", { kind: "info", tag: "history" });
  }
  openSocket();
}

// Reached from a shared link (#room=ID), where only the id is known.
async function joinRoomById(roomId) {
  try {
    const room = await api("GET", roomPath(roomId));
    await joinRoom({ id: room.id, name: room.name });
  } catch (error) {
    if (error.status === 404) {
      showRoomNotFound();
      forgetRoomLink();  // so a reload does not repeat the error
    } else {
      showApiError(error, "Could not open the room");
    }
  }
}

function failJoin(error) {
  if (error.status === 404 && /user/i.test(error.detail)) showUserNotFound();
  else if (error.status === 404) showRoomNotFound();
  else if (error.status === 401 || error.status === 403) showUnauthorized();
  else showApiError(error, "Could not join the room");
  leaveRoom();
}

function enterRoom(room) {
  state.room = room;
  state.lastSeq = 0;
  state.firstSeq = 0;
  state.connectedOnce = false;
  state.reconnectAttempt = 0;
  ui.roomTitle.textContent = room.name;
  document.title = room.name + " · Chat rooms";
  ui.messages.replaceChildren();
  renderPresence([]);
  ui.leaveButton.hidden = false;
  document.body.classList.add("in-room");
  history.replaceState(null, "", "#room=" + encodeURIComponent(room.id));
  markCurrentRoom();
}

// Leaves the current room, if any, without a trace of it on screen.
function leaveRoom() {
  stopReconnecting();
  const socket = state.socket;
  state.socket = null;  // its close event is now ignored: no reconnect
  if (socket) socket.close(1000, "Leaving the room");
  if (state.room === null) return;
  state.room = null;
  ui.roomTitle.textContent = "No room joined";
  document.title = "Chat rooms";
  ui.messages.replaceChildren(textElement("li", "empty", "Join a room to see its messages here."));
  renderPresence([]);
  ui.leaveButton.hidden = true;
  document.body.classList.remove("in-room");
  forgetRoomLink();
  setStatus("idle", "Not connected");
  setComposerEnabled(false);
  markCurrentRoom();
}

// ---------------------------------------------------------------- the socket

function socketUrl() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const query = new URLSearchParams({ username: state.user.username, since: String(state.lastSeq) });
  if (state.user.token) query.set("token", state.user.token);
  return scheme + "//" + location.host + "/ws/" + encodeURIComponent(state.room.id) + "/" +
    encodeURIComponent(state.user.id) + "?" + query;
}

function openSocket() {
  state.reconnectTimer = null;
  ui.reconnectButton.hidden = true;
  if (!state.connectedOnce) setStatus("connecting", "Connecting…");
  const socket = new WebSocket(socketUrl());
  state.socket = socket;
  let greeted = false;  // the first frame is always our own user_joined
  socket.addEventListener("message", (event) => {
    if (socket !== state.socket) return;
    const frame = parseFrame(event.data);
    if (frame === null) return;
    if (!greeted) {
      greeted = true;
      onConnected();
      if (frame.type === "user_joined") return;
    }
    handleFrame(frame);
  });
  socket.addEventListener("close", (event) => {
    if (socket === state.socket) onSocketClosed(event);
  });
}

function parseFrame(data) {
  try {
    const frame = JSON.parse(data);
    return frame && typeof frame === "object" ? frame : null;
  } catch (notJson) {
    return null;
  }
}

function onConnected() {
  const wasReconnect = state.connectedOnce;
  state.connectedOnce = true;
  state.reconnectAttempt = 0;
  setStatus("connected", "Connected");
  setComposerEnabled(true);
  if (!wasReconnect) focusComposer();  // a reconnect must not steal focus
  clearNotice("connection");
  clearNotice("unreachable");
  showEvent(wasReconnect ? "Reconnected." : "You joined “" + state.room.name + "”.");
  refreshPresence();
  if (!wasReconnect) loadRooms();  // member counts just changed
}

function handleFrame(frame) {
  switch (frame.type) {
    case "message":
      showMessage(frame);
      break;
    case "user_joined":
      showEvent(frame.message || frame.username + " joined the chat");
      refreshPresence();
      break;
    case "user_left":
      showEvent(frame.message || frame.username + " left the chat");
      refreshPresence();
      break;
    case "error":
      showEvent("The server refused a message: " + frame.message, "event-error");
      break;
    case "token":  // sent once when the server created our user on connect
      saveToken(frame.token);
      break;
    default:
      break;  // newer frame types are for newer pages
  }
}

// While reconnecting the message box stays usable: one can go on typing.
function onSocketClosed(event) {
  state.socket = null;
  if (event.code === 4004 && /user/i.test(event.reason)) return stopWith(showUserNotFound);
  if (event.code === 4004) return stopWith(showRoomNotFound);
  if (event.code === 4001) return stopWith(showUnauthorized);
  if (event.code === 4003) return stopWith(showOriginRefused);
  // Say it once per outage; failed retries only update the status.
  if (state.reconnectAttempt === 0) {
    showNotice(closeExplanation(event) + " Reconnecting by itself; nothing you missed will be lost.", {
      kind: "warning",
      tag: "connection",
    });
  }
  scheduleReconnect();
}

// Refusals that a retry cannot fix: stop and say what to do. The room stays
// on screen so what was already said can still be read.
function stopWith(explain) {
  explain();
  setStatus("stopped", "Disconnected");
  setComposerEnabled(false);
}

function closeExplanation(event) {
  if (event.code === 1001) return "The server is restarting.";
  if (event.code === 1009) return "A message was too big for the server, which closed the connection.";
  if (event.code === 1008) return "The server closed the connection (" + (event.reason || "policy") + ").";
  return "The connection to the server was lost.";
}

function scheduleReconnect() {
  // Doubling delays with a cap, and some randomness so that every page does
  // not hit a restarted server at the same instant.
  const base = Math.min(RECONNECT_MAX_DELAY_MS, RECONNECT_FIRST_DELAY_MS * 2 ** state.reconnectAttempt);
  const delay = Math.round(base * (0.8 + Math.random() * 0.4));
  state.reconnectAttempt += 1;
  setStatus("reconnecting", "Reconnecting… (attempt " + state.reconnectAttempt + ")");
  ui.reconnectButton.hidden = false;
  state.reconnectTimer = setTimeout(openSocket, delay);
}

function stopReconnecting() {
  if (state.reconnectTimer !== null) clearTimeout(state.reconnectTimer);
  state.reconnectTimer = null;
  ui.reconnectButton.hidden = true;
}

function reconnectNow() {
  if (state.reconnectTimer === null || state.room === null) return;
  stopReconnecting();
  openSocket();
}

function setStatus(kind, text) {
  ui.status.className = "status status-" + kind;
  ui.status.textContent = text;
}

// ---------------------------------------------------------------- messages

function showMessage(message) {
  // Messages come in seq order; anything at or below the last seq shown is a
  // replay we already have (history plus `since` overlap, or a reconnect).
  if (typeof message.seq === "number") {
    if (message.seq <= state.lastSeq) return;
    if (state.firstSeq === 0) state.firstSeq = message.seq;
    state.lastSeq = message.seq;
  }
  const item = messageItem(message);
  appendToLog(item, item.classList.contains("mine"));
}

function messageItem(message) {
  const mine = state.user !== null && message.user_id === state.user.id;
  const item = textElement("li", mine ? "message mine" : "message");
  if (typeof message.seq === "number") item.dataset.seq = String(message.seq);
  const meta = textElement("div", "message-meta");
  const author = textElement("span", "author " + authorColorClass(message.user_id), message.username);
  const time = textElement("time", "time", formatTime(message.timestamp));
  time.dateTime = message.timestamp || "";
  meta.append(author, time);
  item.append(meta, textElement("p", "content", message.content));
  return item;
}

// A full page of history suggests there is more before it.
function offerEarlier(page) {
  const button = byId("load-earlier");
  if (button) button.parentElement.remove();
  if (page.length < HISTORY_LIMIT || state.firstSeq <= 1) return;
  const item = textElement("li", "earlier");
  const more = textElement("button", "secondary", "Show earlier messages");
  more.type = "button";
  more.id = "load-earlier";
  more.addEventListener("click", showEarlier);
  item.append(more);
  ui.messages.prepend(item);
}

async function showEarlier() {
  const room = state.room;
  let page;
  try {
    page = await readRoom(room, "/messages?limit=" + HISTORY_LIMIT + "&before=" + state.firstSeq);
  } catch (error) {
    showApiError(error, "Could not load earlier messages");
    return;
  }
  if (state.room !== room) return;
  if (page.length === 0) {
    offerEarlier([]);  // nothing older after all: drop the button
    return;
  }
  // Keep what the person was looking at in place while older lines go above it.
  const log = ui.messages;
  const fromBottom = log.scrollHeight - log.scrollTop;
  const anchor = byId("load-earlier").parentElement.nextSibling;
  for (const message of page) log.insertBefore(messageItem(message), anchor);
  state.firstSeq = page[0].seq;
  offerEarlier(page);
  log.scrollTop = log.scrollHeight - fromBottom;
}

function showEvent(text, extraClass) {
  appendToLog(textElement("li", "event " + (extraClass || ""), text), false);
}

// Follow new messages, unless the person scrolled up to read older ones.
function appendToLog(item, alwaysScroll) {
  const log = ui.messages;
  const nearBottom = log.scrollHeight - log.scrollTop - log.clientHeight < NEAR_BOTTOM_PX;
  log.append(item);
  if (alwaysScroll || nearBottom) log.scrollTop = log.scrollHeight;
}

function sendMessage() {
  const content = ui.messageInput.value.trim();
  if (content === "") return;
  if (state.socket === null || state.socket.readyState !== WebSocket.OPEN) {
    showNotice("Not connected right now, so this was not sent; it is still in the box. " +
      "Press Enter again once the status says Connected.", {
      kind: "warning",
      tag: "connection",
    });
    return;
  }
  // Not shown yet: it appears when the server sends it back with its seq,
  // so every page shows the same messages in the same order.
  state.socket.send(JSON.stringify({ type: "message", content }));
  ui.messageInput.value = "";
  ui.messageInput.focus();
}

function setComposerEnabled(enabled) {
  ui.messageInput.disabled = !enabled;
  ui.sendButton.disabled = !enabled;
}

// Not on touch screens, where focus pops up the keyboard over the messages.
function focusComposer() {
  if (!matchMedia("(pointer: coarse)").matches) ui.messageInput.focus();
}

// ---------------------------------------------------------------- presence

async function refreshPresence() {
  const room = state.room;
  if (room === null) return;
  // A leave and a join in quick succession ask twice; with several server
  // processes the answers can come back in either order, and the older one is stale.
  const asked = ++state.presenceAsked;
  try {
    const people = await readRoom(room, "/presence");
    if (state.room === room && asked === state.presenceAsked) renderPresence(people);
  } catch (error) {
    // Presence is a nicety: keep the last list rather than alarm anyone.
  }
}

function renderPresence(people) {
  people = withMyself(people);
  ui.onlineList.replaceChildren();
  for (const person of people) {
    const isMe = state.user !== null && person.user_id === state.user.id;
    const item = textElement("li", "person " + authorColorClass(person.user_id), person.username);
    if (isMe) item.append(textElement("span", "you", " (you)"));
    ui.onlineList.append(item);
  }
  ui.onlineCount.textContent = people.length ? "(" + people.length + ")" : "";
}

// Our socket is open, so we are online. With several server processes the
// presence request may reach one that has not yet seen our socket (its process
// records it a moment after greeting us): add ourselves rather than wait.
function withMyself(people) {
  const me = state.user;
  const open = state.socket !== null && state.socket.readyState === WebSocket.OPEN;
  if (me === null || !open || people.some((person) => person.user_id === me.id)) return people;
  const all = people.concat([{ user_id: me.id, username: me.username, connections: 1 }]);
  return all.sort((a, b) => (a.username < b.username ? -1 : a.username > b.username ? 1 : 0));
}

// ---------------------------------------------------------------- start

// Disables a form's buttons while its request runs, so a double click does
// not create two users or rooms.
function onSubmit(form, handler) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const buttons = form.querySelectorAll("button");
    buttons.forEach((button) => { button.disabled = true; });
    try {
      await handler();
    } finally {
      buttons.forEach((button) => { button.disabled = false; });
    }
  });
}

function forgetRoomLink() {
  history.replaceState(null, "", location.pathname + location.search);
}

function roomIdFromLink() {
  const match = /^#room=(.+)$/.exec(location.hash);
  try {
    return match ? decodeURIComponent(match[1]) : null;
  } catch (badEscape) {
    return match[1];  // a mangled link: let the server say the room is unknown
  }
}

function findElements() {
  ui = {
    notice: byId("notice"),
    noticeText: byId("notice-text"),
    noticeActions: byId("notice-actions"),
    noticeClose: byId("notice-close"),
    whoami: byId("whoami"),
    whoamiName: byId("whoami-name"),
    switchUser: byId("switch-user"),
    userPanel: byId("user-panel"),
    userForm: byId("user-form"),
    usernameInput: byId("username"),
    userHint: byId("user-hint"),
    roomForm: byId("room-form"),
    roomNameInput: byId("room-name"),
    loadRoomsButton: byId("load-rooms"),
    roomsHint: byId("rooms-hint"),
    roomList: byId("room-list"),
    roomTitle: byId("room-title"),
    status: byId("connection-status"),
    reconnectButton: byId("reconnect-now"),
    leaveButton: byId("leave-room"),
    messages: byId("messages"),
    onlineList: byId("online-list"),
    onlineCount: byId("online-count"),
    composer: byId("composer"),
    messageInput: byId("message-input"),
    sendButton: byId("send"),
  };
}

function wireEvents() {
  onSubmit(ui.userForm, async () => {
    if (await createUser(ui.usernameInput.value)) {
      ui.usernameInput.value = "";
      const linked = roomIdFromLink();
      if (linked && state.room === null) await joinRoomById(linked);
    }
  });
  onSubmit(ui.roomForm, async () => {
    if (await createRoom(ui.roomNameInput.value)) ui.roomNameInput.value = "";
  });
  ui.composer.addEventListener("submit", (event) => {
    event.preventDefault();
    sendMessage();
  });
  ui.loadRoomsButton.addEventListener("click", loadRooms);
  ui.leaveButton.addEventListener("click", () => { clearNotice(); leaveRoom(); });
  ui.reconnectButton.addEventListener("click", reconnectNow);
  ui.switchUser.addEventListener("click", askToSwitchUser);
  ui.noticeClose.addEventListener("click", () => clearNotice());
  // Coming back online is the best moment to retry, whatever the backoff says.
  window.addEventListener("online", reconnectNow);
  window.addEventListener("hashchange", () => {
    const linked = roomIdFromLink();
    if (linked && (state.room === null || state.room.id !== linked)) joinRoomById(linked);
  });
}

function start() {
  findElements();
  wireEvents();
  state.user = loadSavedUser();
  renderUser();
  setComposerEnabled(false);
  loadRooms();
  const linked = roomIdFromLink();
  if (linked && state.user) joinRoomById(linked);
  else if (linked) showNotice("Create a user (step 1) to enter the room from your link.", { kind: "info", tag: "need-user" });
  else if (state.user === null) ui.usernameInput.focus();
}

start();
