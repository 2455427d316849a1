// The web client: plain JavaScript, no build step. Served by the gateway on
// the same origin as the API: REST under /api/v1, Socket.IO at /socket.io/
// (the official browser client, /socket.io.min.js, defines `io`).
//
// Tokens: the access token lives in memory only; the refresh token in
// sessionStorage (this tab), so a reload resumes the session. The access
// token is refreshed through REST before it expires and swapped on the live
// socket with `auth:refresh`.
//
// All user-provided text is put into the page with textContent, never as HTML.
"use strict";

(() => {
  const API = "/api/v1";
  const REFRESH_KEY = "chat.refresh_token";
  const HISTORY_PAGE = 50;
  const ACK_TIMEOUT_MS = 10_000;
  const TYPING_IDLE_MS = 3_000; // stop after this long without a keystroke
  const TYPING_RENEW_MS = 4_000; // re-announce while typing goes on
  const TYPING_SHOW_MS = 6_000; // hide a peer's indicator without a renewal
  const STATUS_RANK = { pending: -1, failed: -2, sent: 0, delivered: 1, read: 2 };
  const STATUS_MARK = { pending: "🕓", failed: "⚠", sent: "✓", delivered: "✓✓", read: "✓✓" };

  const $ = (id) => document.getElementById(id);
  const el = (tag, className, text) => {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  };
  const enc = encodeURIComponent;

  const state = {
    accessToken: null,
    accessExpiresAt: 0,
    refreshTimer: null,
    refreshing: null,
    me: null, // {id, username, display_name}
    socket: null,
    everConnected: false,
    reconnectDelay: 1000,
    conversations: new Map(), // id → conversation (REST shape + client fields)
    fetchingConversation: new Map(), // id → Promise
    profiles: new Map(), // user_id → profile
    profileAttempts: new Map(), // user_id → last lookup time (missing profiles)
    presence: new Map(), // user_id → {online, last_seen_at}
    subscribed: new Set(), // presence subscriptions of the current socket
    typing: new Map(), // conversation_id → Map(user_id → timer)
    view: null, // the open conversation (see openConversation)
    outgoingTyping: { active: false, conversationId: null, lastStart: 0, timer: null },
    delivered: new Map(), // conversation_id → {seq, timer}
  };

  // ---------------------------------------------------------------- errors

  class ApiError extends Error {
    constructor(code, message, { field = null, status = 0, retryAfterMs = null } = {}) {
      super(message);
      this.code = code;
      this.field = field;
      this.status = status;
      this.retryAfterMs = retryAfterMs;
    }
  }

  let bannerTimer = null;
  function showError(error) {
    if (!error) return;
    let text = error instanceof Error ? error.message : String(error);
    if (error.field && !text.includes(error.field)) text += ` (${error.field})`;
    if (error.retryAfterMs) text += ` — try again in ${Math.ceil(error.retryAfterMs / 1000)} s`;
    $("banner-text").textContent = text;
    $("banner").dataset.code = error.code || "";
    $("banner").hidden = false;
    clearTimeout(bannerTimer);
    bannerTimer = setTimeout(hideError, 8000);
    console.warn("chat:", error);
  }
  function hideError() {
    $("banner").hidden = true;
  }

  // ---------------------------------------------------------------- REST

  async function api(method, path, body, { auth = true, retried = false } = {}) {
    if (auth) await ensureFreshToken();
    const headers = { accept: "application/json" };
    if (body !== undefined) headers["content-type"] = "application/json";
    if (auth && state.accessToken) headers.authorization = `Bearer ${state.accessToken}`;
    let response;
    try {
      response = await fetch(API + path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        credentials: "same-origin",
      });
    } catch (error) {
      throw new ApiError("NETWORK", `Network error: ${error.message}`);
    }
    // An access token can be refused before its expiry (revoked key, clock
    // skew): refresh once and retry.
    if (response.status === 401 && auth && !retried && sessionStorage.getItem(REFRESH_KEY)) {
      await refreshTokens();
      return api(method, path, body, { auth, retried: true });
    }
    const text = await response.text();
    let data = null;
    if (text) {
      try {
        data = JSON.parse(text);
      } catch {
        data = null;
      }
    }
    if (!response.ok) {
      const retryAfter = Number(response.headers.get("retry-after"));
      throw new ApiError(
        (data && data.code) || `HTTP_${response.status}`,
        (data && data.message) || `${method} ${path}: ${response.status} ${response.statusText}`,
        {
          field: data && data.field,
          status: response.status,
          retryAfterMs: retryAfter > 0 ? retryAfter * 1000 : null,
        },
      );
    }
    return data;
  }

  // ---------------------------------------------------------------- tokens

  function jwtClaims(token) {
    try {
      const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      return JSON.parse(atob(part + "===".slice((part.length + 3) % 4)));
    } catch {
      return {};
    }
  }

  /** Keeps a TokenPair: access token in memory, refresh token in sessionStorage. */
  function applyTokens(pair) {
    state.accessToken = pair.access_token;
    sessionStorage.setItem(REFRESH_KEY, pair.refresh_token);
    // Lifetime from the token itself (exp - iat), measured from now: immune
    // to a skewed local clock. Else the server's access_expires_at.
    const claims = jwtClaims(pair.access_token);
    let lifetime = Number(claims.exp) - Number(claims.iat);
    if (!(lifetime > 0)) {
      lifetime = (Date.parse(pair.access_expires_at) - Date.now()) / 1000;
    }
    if (!(lifetime > 0)) lifetime = 15 * 60;
    const now = Date.now();
    state.accessExpiresAt = now + lifetime * 1000;
    // Refresh a minute early (or at 80% of very short lifetimes).
    const early = Math.min(60_000, lifetime * 1000 * 0.2);
    clearTimeout(state.refreshTimer);
    state.refreshTimer = setTimeout(() => {
      refreshTokens().catch(showError);
    }, Math.max(1000, lifetime * 1000 - early));
  }

  /** Trades the refresh token for a new pair (one call at a time). */
  function refreshTokens() {
    if (!state.refreshing) {
      state.refreshing = (async () => {
        const refreshToken = sessionStorage.getItem(REFRESH_KEY);
        if (!refreshToken) throw new ApiError("UNAUTHENTICATED", "Please log in again.");
        let pair;
        try {
          pair = await api("POST", "/auth/refresh", { refresh_token: refreshToken }, { auth: false });
        } catch (error) {
          if (error.status === 401 || error.code === "UNAUTHENTICATED") {
            endSession();
            throw new ApiError(error.code, "Your session has ended; please log in again.");
          }
          throw error;
        }
        applyTokens(pair);
        await swapSocketToken();
        return pair;
      })().finally(() => {
        state.refreshing = null;
      });
    }
    return state.refreshing;
  }

  async function ensureFreshToken() {
    if (state.refreshing) {
      await state.refreshing;
      return;
    }
    if (state.accessToken && Date.now() > state.accessExpiresAt - 30_000 && sessionStorage.getItem(REFRESH_KEY)) {
      await refreshTokens();
    }
  }

  /** Gives the live socket the new access token (reconnects use socket.auth). */
  async function swapSocketToken() {
    const socket = state.socket;
    if (!socket) return;
    socket.auth = { token: state.accessToken };
    if (!socket.connected) return;
    try {
      await emit("auth:refresh", { token: state.accessToken }, { noRefresh: true });
    } catch (error) {
      showError(error);
    }
  }

  // ---------------------------------------------------------------- session

  async function register() {
    const username = $("username").value.trim().toLowerCase();
    const password = $("password").value;
    const email = $("email").value.trim();
    const displayName = $("display-name").value.trim();
    if (!username || !password || !email) {
      showError(new ApiError("INVALID_ARGUMENT", "Registering needs a username, an email and a password."));
      return;
    }
    const body = { username, email, password };
    if (displayName) body.display_name = displayName;
    const registered = await api("POST", "/auth/register", body, { auth: false });
    applyTokens(registered.tokens);
    state.me = {
      id: registered.user.id || registered.tokens.user_id,
      username: registered.user.username || username,
      display_name: displayName,
    };
    await startSession();
  }

  async function login() {
    const loginName = $("username").value.trim();
    const password = $("password").value;
    if (!loginName || !password) {
      showError(new ApiError("INVALID_ARGUMENT", "Enter your username (or email) and password."));
      return;
    }
    const pair = await api(
      "POST",
      "/auth/login",
      { login: loginName, password, device_name: "Web browser" },
      { auth: false },
    );
    applyTokens(pair);
    state.me = { id: pair.user_id, username: loginName.includes("@") ? "" : loginName.toLowerCase(), display_name: "" };
    await startSession();
  }

  async function loadMe() {
    try {
      const profile = await api("GET", "/users/me");
      state.profiles.set(profile.user_id, profile);
      state.me.username = profile.username || state.me.username;
      state.me.display_name = profile.display_name || state.me.display_name;
    } catch (error) {
      // A brand-new account's profile is created asynchronously; keep what we have.
      if (error.status !== 404) showError(error);
    }
    renderMe();
  }

  async function startSession() {
    $("password").value = "";
    $("auth-view").hidden = true;
    $("chat-view").hidden = false;
    hideError();
    renderMe();
    connectSocket();
    // After a registration the username is known (and the profile may not
    // exist yet: users creates it from an event); else ask for it.
    if (!state.me.username || !state.me.display_name) loadMe();
    await loadConversations();
  }

  /** Forgets the session locally (tokens, socket, state) and shows the login form. */
  function endSession() {
    clearTimeout(state.refreshTimer);
    sessionStorage.removeItem(REFRESH_KEY);
    state.accessToken = null;
    state.accessExpiresAt = 0;
    if (state.socket) {
      state.socket.removeAllListeners();
      state.socket.disconnect();
    }
    state.socket = null;
    state.everConnected = false;
    state.me = null;
    state.conversations.clear();
    state.presence.clear();
    state.subscribed.clear();
    for (const timers of state.typing.values()) for (const timer of timers.values()) clearTimeout(timer);
    state.typing.clear();
    state.view = null;
    conversationNodes.clear();
    $("conversations").replaceChildren();
    $("message-list").replaceChildren();
    $("pane").hidden = true;
    $("empty").hidden = false;
    $("chat-view").hidden = true;
    $("auth-view").hidden = false;
  }

  async function logout() {
    const refreshToken = sessionStorage.getItem(REFRESH_KEY);
    if (refreshToken) {
      try {
        await api("POST", "/auth/logout", { refresh_token: refreshToken }, { auth: false });
      } catch {
        // The session is forgotten locally either way.
      }
    }
    endSession();
  }

  function renderMe() {
    const me = state.me;
    const node = $("me");
    if (!me) {
      node.textContent = "";
      return;
    }
    node.textContent = me.display_name ? `${me.display_name} (@${me.username})` : `@${me.username || me.id.slice(0, 8)}`;
    node.dataset.userId = me.id;
    node.dataset.username = me.username || "";
  }

  // ---------------------------------------------------------------- socket

  function setConnection(stateName) {
    $("connection").dataset.state = stateName;
    $("connection").title = stateName;
  }

  function connectSocket() {
    if (typeof window.io !== "function") {
      showError(new ApiError("UNAVAILABLE", "The Socket.IO client did not load (/socket.io.min.js)."));
      return;
    }
    // As the README says: the access token in the handshake's auth payload.
    const socket = window.io({ auth: { token: state.accessToken }, transports: ["websocket"] });
    state.socket = socket;
    setConnection("connecting");

    socket.on("connect", () => {
      setConnection("online");
      state.reconnectDelay = 1000;
      state.subscribed.clear();
      const reconnect = state.everConnected;
      state.everConnected = true;
      subscribePresence();
      if (reconnect) resync().catch(showError);
    });
    socket.on("disconnect", (reason) => {
      setConnection("offline");
      state.subscribed.clear();
      if (reason === "io server disconnect" && state.socket === socket) {
        // The server closed it: socket.io does not reconnect by itself.
        setTimeout(() => state.socket === socket && socket.connect(), state.reconnectDelay);
      }
    });
    socket.on("connect_error", async (error) => {
      setConnection("offline");
      if (socket.active) return; // a transport error: the client retries itself
      // Refused by the server (usually an expired access token): refresh,
      // then reconnect with backoff.
      try {
        await refreshTokens();
      } catch (refreshError) {
        if (!state.me) return; // logged out
        showError(refreshError);
      }
      if (state.socket !== socket) return;
      const delay = state.reconnectDelay;
      state.reconnectDelay = Math.min(delay * 2, 30_000);
      setTimeout(() => {
        if (state.socket === socket && !socket.connected) {
          socket.auth = { token: state.accessToken };
          socket.connect();
        }
      }, delay);
      if (error && error.message && delay >= 4000) {
        showError(new ApiError("UNAVAILABLE", `Cannot connect: ${error.message}`));
      }
    });

    socket.on("message:new", (message, ack) => {
      // The ack marks the message delivered for this user (README).
      if (typeof ack === "function") ack();
      onMessage(message);
    });
    socket.on("message:updated", (message) => onMessageUpdated(message));
    socket.on("message:deleted", (event) => onMessageDeleted(event));
    socket.on("receipt:updated", (receipt) => onReceipt(receipt));
    socket.on("typing", (event) => onTyping(event));
    socket.on("conversation:updated", (event) => onConversationUpdated(event));
    socket.on("presence", (event) => onPresence(event));
  }

  /** Emits a client event; resolves with the ack's data or throws its error. */
  async function emit(event, payload, { noRefresh = false } = {}) {
    const socket = state.socket;
    if (!socket || !socket.connected) throw new ApiError("UNAVAILABLE", "Not connected to the server.");
    let reply;
    try {
      reply = await socket.timeout(ACK_TIMEOUT_MS).emitWithAck(event, payload);
    } catch {
      throw new ApiError("DEADLINE_EXCEEDED", `No answer to ${event} from the server.`);
    }
    if (reply && reply.ok) return reply.data;
    const error = (reply && reply.error) || {};
    if (error.code === "UNAUTHENTICATED" && !noRefresh && sessionStorage.getItem(REFRESH_KEY)) {
      await refreshTokens();
      return emit(event, payload, { noRefresh: true });
    }
    throw new ApiError(error.code || "UNKNOWN", error.message || `${event} failed`, {
      field: error.field,
      retryAfterMs: error.retry_after_ms,
    });
  }

  /** After a reconnect: what was missed while offline. */
  async function resync() {
    await loadConversations({ prune: true });
    const view = state.view;
    if (!view) return;
    for (let page = 0; page < 10 && state.view === view; page++) {
      const after = newestSeq(view);
      const data = await api("GET", `/conversations/${enc(view.id)}/messages?after=${after}&limit=${HISTORY_PAGE}`);
      if (state.view !== view) return;
      for (const message of data.messages) upsertMessage(view, message);
      if (!data.next_cursor || data.messages.length === 0) break;
    }
    markReadSoon();
  }

  // ---------------------------------------------------------------- profiles, presence

  async function ensureProfiles(ids) {
    const now = Date.now();
    const missing = [...new Set(ids)].filter(
      (id) => id && !state.profiles.has(id) && now - (state.profileAttempts.get(id) || 0) > 5000,
    );
    if (missing.length === 0) return;
    for (const id of missing) state.profileAttempts.set(id, now);
    for (let i = 0; i < missing.length; i += 500) {
      const chunk = missing.slice(i, i + 500);
      try {
        const profiles = await api("GET", `/users?ids=${chunk.map(enc).join(",")}`);
        for (const profile of profiles) state.profiles.set(profile.user_id, profile);
      } catch (error) {
        console.warn("profiles", error);
      }
    }
  }

  function nameOf(userId) {
    if (state.me && userId === state.me.id) return "You";
    const profile = state.profiles.get(userId);
    if (!profile) return `user ${String(userId).slice(0, 8)}`;
    return profile.display_name || profile.username;
  }

  async function subscribePresence() {
    const socket = state.socket;
    if (!socket || !socket.connected) return;
    const peers = [];
    for (const conversation of state.conversations.values()) {
      const peer = peerOf(conversation);
      if (peer && !peer.is_bot && !state.subscribed.has(peer.user_id)) peers.push(peer.user_id);
    }
    const unique = [...new Set(peers)].slice(0, 200);
    if (unique.length === 0) return;
    for (const id of unique) state.subscribed.add(id);
    try {
      const data = await emit("presence:subscribe", { user_ids: unique });
      for (const presence of data.presences || []) state.presence.set(presence.user_id, presence);
      renderConversations();
      renderHeader();
    } catch (error) {
      for (const id of unique) state.subscribed.delete(id);
      console.warn("presence:subscribe", error);
    }
  }

  function onPresence(event) {
    state.presence.set(event.user_id, event);
    renderConversations();
    renderHeader();
  }

  function presenceText(userId) {
    const presence = state.presence.get(userId);
    if (!presence) return "";
    if (presence.online) return "online";
    if (presence.last_seen_at) return `last seen ${formatWhen(presence.last_seen_at)}`;
    return "offline";
  }

  // ---------------------------------------------------------------- conversations

  function peerOf(conversation) {
    if (conversation.kind !== "private" || !state.me) return null;
    return (conversation.members || []).find((member) => member.user_id !== state.me.id) || null;
  }

  function titleOf(conversation) {
    if (conversation.kind === "group") return conversation.title || "Group";
    const peer = peerOf(conversation);
    if (!peer) return conversation.title || "Private chat";
    return nameOf(peer.user_id);
  }

  function activityOf(conversation) {
    const last = conversation.last_message;
    return Date.parse((last && last.sent_at) || conversation.updated_at || conversation.created_at || 0) || 0;
  }

  function myReadSeq(conversation) {
    const me = (conversation.members || []).find((member) => state.me && member.user_id === state.me.id);
    return Math.max(conversation.myRead || 0, me ? Number(me.read_seq) || 0 : 0);
  }

  /** Stores a conversation from the API, keeping client-side receipt state. */
  function storeConversation(data) {
    const existing = state.conversations.get(data.id);
    const conversation = Object.assign(existing || { watermarks: new Map(), myRead: 0 }, data);
    for (const member of data.members || []) {
      mergeWatermark(conversation, member.user_id, member.delivered_seq, member.read_seq);
    }
    conversation.last_seq = Number(conversation.last_seq) || 0;
    // unread_count = last_seq - my read watermark (chat); never move it back.
    conversation.myRead = Math.max(
      myReadSeq(conversation),
      conversation.last_seq - (Number(data.unread_count) || 0),
    );
    state.conversations.set(data.id, conversation);
    return conversation;
  }

  function mergeWatermark(conversation, userId, delivered, read) {
    const current = conversation.watermarks.get(userId) || { delivered_seq: 0, read_seq: 0 };
    conversation.watermarks.set(userId, {
      delivered_seq: Math.max(current.delivered_seq, Number(delivered) || 0),
      read_seq: Math.max(current.read_seq, Number(read) || 0),
    });
  }

  async function loadConversations({ prune = false } = {}) {
    const seen = new Set();
    let cursor = "";
    for (let page = 0; page < 10; page++) {
      const data = await api("GET", `/conversations?limit=100${cursor ? `&cursor=${enc(cursor)}` : ""}`);
      for (const conversation of data.conversations) {
        storeConversation(conversation);
        seen.add(conversation.id);
      }
      cursor = data.next_cursor;
      if (!cursor) break;
    }
    if (prune && !cursor) {
      // A complete list: drop conversations we left or were removed from.
      for (const id of [...state.conversations.keys()]) {
        if (!seen.has(id) && !(state.view && state.view.id === id)) state.conversations.delete(id);
      }
    }
    await ensureProfiles(profileIdsOfList());
    renderConversations();
    subscribePresence();
  }

  function profileIdsOfList() {
    const ids = [];
    for (const conversation of state.conversations.values()) {
      const peer = peerOf(conversation);
      if (peer) ids.push(peer.user_id);
      if (conversation.last_message) ids.push(conversation.last_message.sender_id);
    }
    return ids;
  }

  /** Fetches one conversation (once at a time per id) and stores it. */
  function fetchConversation(id) {
    if (!state.fetchingConversation.has(id)) {
      const promise = (async () => {
        try {
          const data = await api("GET", `/conversations/${enc(id)}`);
          const conversation = storeConversation(data);
          await ensureProfiles((data.members || []).map((member) => member.user_id));
          renderConversations();
          subscribePresence();
          return conversation;
        } catch (error) {
          if (error.status === 403 || error.status === 404) {
            state.conversations.delete(id);
            renderConversations();
            return null;
          }
          throw error;
        } finally {
          state.fetchingConversation.delete(id);
        }
      })();
      state.fetchingConversation.set(id, promise);
    }
    return state.fetchingConversation.get(id);
  }

  const conversationNodes = new Map(); // conversation id → its <li> (kept, so clicks never hit a replaced node)

  function renderConversations() {
    if (!state.me) return;
    const list = $("conversations");
    const items = [...state.conversations.values()].sort((a, b) => activityOf(b) - activityOf(a));
    for (const id of [...conversationNodes.keys()]) {
      if (!state.conversations.has(id)) {
        conversationNodes.get(id).remove();
        conversationNodes.delete(id);
      }
    }
    const nodes = items.map((conversation) => {
      let li = conversationNodes.get(conversation.id);
      if (!li) {
        li = el("li", "conversation");
        li.dataset.testid = "conversation";
        li.dataset.conversationId = conversation.id;
        li.tabIndex = 0;
        conversationNodes.set(conversation.id, li);
      }
      li.dataset.kind = conversation.kind;
      li.classList.toggle("active", Boolean(state.view && state.view.id === conversation.id));
      const parts = [];

      const peer = peerOf(conversation);
      if (peer) {
        const profile = state.profiles.get(peer.user_id);
        if (profile) li.dataset.peerUsername = profile.username;
        const dot = el("span", "dot");
        if (peer.is_bot || (profile && profile.is_bot)) {
          dot.classList.add("bot");
          dot.title = "bot";
        } else {
          const presence = state.presence.get(peer.user_id);
          dot.classList.toggle("online", Boolean(presence && presence.online));
          dot.dataset.online = String(Boolean(presence && presence.online));
          dot.title = presenceText(peer.user_id) || "presence unknown";
        }
        parts.push(dot);
      } else {
        parts.push(el("span", "dot group", "#"));
      }

      const body = el("div", "conversation-body");
      const top = el("div", "row-between");
      const title = el("span", "conversation-title", titleOf(conversation));
      title.dataset.testid = "conversation-title";
      li.dataset.title = title.textContent;
      top.append(title);
      if (conversation.last_message && conversation.last_message.sent_at) {
        top.append(el("span", "muted small", formatTime(conversation.last_message.sent_at)));
      }
      const bottom = el("div", "row-between");
      const typers = typingNames(conversation.id);
      const preview = el("span", "preview muted small");
      preview.dataset.testid = "preview";
      if (typers) {
        preview.textContent = typers;
        preview.classList.add("typing-preview");
      } else if (conversation.last_message) {
        const last = conversation.last_message;
        const prefix =
          last.sender_id === state.me.id ? "You: " : conversation.kind === "group" ? `${nameOf(last.sender_id)}: ` : "";
        preview.textContent = prefix + (last.deleted ? "message deleted" : previewText(last));
      } else {
        preview.textContent = "no messages yet";
      }
      bottom.append(preview);
      const unread = Math.max(0, conversation.last_seq - conversation.myRead);
      const badge = el("span", "badge", unread > 99 ? "99+" : unread);
      badge.dataset.testid = "unread";
      badge.dataset.count = String(unread);
      badge.hidden = unread === 0;
      bottom.append(badge);
      body.append(top, bottom);
      parts.push(body);
      li.replaceChildren(...parts);
      return li;
    });
    // Move nodes only where the order changed.
    nodes.forEach((node, index) => {
      if (list.children[index] !== node) list.insertBefore(node, list.children[index] || null);
    });
  }

  function previewText(message) {
    if (message.content) return message.content.length > 80 ? `${message.content.slice(0, 80)}…` : message.content;
    if (message.kind === "image") return "🖼 image";
    if (message.kind === "file") return "📎 file";
    return "";
  }

  function onConversationUpdated(event) {
    if (!event || !event.conversation_id) return;
    if (event.change === "member_removed" && state.me && event.user_id === state.me.id) {
      state.conversations.delete(event.conversation_id);
      if (state.view && state.view.id === event.conversation_id) closeConversation();
      renderConversations();
      return;
    }
    fetchConversation(event.conversation_id)
      .then(() => {
        if (state.view && state.view.id === event.conversation_id) renderHeader();
      })
      .catch((error) => console.warn("conversation:updated", error));
  }

  // ---------------------------------------------------------------- search, new chats

  let searchTimer = null;
  let searchSerial = 0;
  function onSearchInput() {
    clearTimeout(searchTimer);
    const query = $("search").value.trim().replace(/^@/, "");
    if (!query) {
      $("search-results").replaceChildren();
      return;
    }
    searchTimer = setTimeout(() => runSearch(query), 250);
  }

  async function runSearch(query) {
    const serial = ++searchSerial;
    let page;
    try {
      page = await api("GET", `/users/search?q=${enc(query)}&limit=10`);
    } catch (error) {
      showError(error);
      return;
    }
    if (serial !== searchSerial) return; // a newer search is under way
    const results = $("search-results");
    const hits = page.hits || [];
    if (hits.length === 0) {
      const none = el("li", "muted small", "Nobody found.");
      none.dataset.testid = "search-empty";
      results.replaceChildren(none);
      return;
    }
    results.replaceChildren(
      ...hits.map(({ profile }) => {
        state.profiles.set(profile.user_id, profile);
        const li = el("li", "search-result");
        li.dataset.testid = "search-result";
        li.dataset.userId = profile.user_id;
        li.dataset.username = profile.username;
        li.tabIndex = 0;
        li.append(el("span", "name", profile.display_name || profile.username));
        li.append(el("span", "muted small", ` @${profile.username}`));
        if (profile.is_bot) li.append(el("span", "tag", "bot"));
        return li;
      }),
    );
  }

  async function openPrivateWith(userId) {
    const data = await api("POST", "/conversations/private", { peer_id: userId });
    const conversation = storeConversation(data);
    await ensureProfiles((data.members || []).map((member) => member.user_id));
    $("search").value = "";
    $("search-results").replaceChildren();
    renderConversations();
    subscribePresence();
    await openConversation(conversation.id);
  }

  /** Usernames → user ids, through search (exact username match). */
  async function resolveUsernames(raw) {
    const names = [
      ...new Set(
        raw
          .split(/[\s,]+/)
          .map((name) => name.trim().replace(/^@/, "").toLowerCase())
          // Search never finds yourself; you are a member anyway.
          .filter((name) => name && !(state.me && name === state.me.username)),
      ),
    ];
    const ids = [];
    const unknown = [];
    for (const name of names) {
      const page = await api("GET", `/users/search?q=${enc(name)}&limit=20`);
      const hit = (page.hits || []).find((h) => h.profile.username.toLowerCase() === name);
      if (hit) {
        state.profiles.set(hit.profile.user_id, hit.profile);
        ids.push(hit.profile.user_id);
      } else {
        unknown.push(name);
      }
    }
    if (unknown.length) throw new ApiError("NOT_FOUND", `No such user: ${unknown.join(", ")}`);
    return ids;
  }

  async function createGroup() {
    const title = $("group-title").value.trim();
    if (!title) {
      showError(new ApiError("INVALID_ARGUMENT", "Give the group a name."));
      return;
    }
    const memberIds = await resolveUsernames($("group-members").value);
    const data = await api("POST", "/conversations/group", { title, member_ids: memberIds });
    const conversation = storeConversation(data);
    $("group-title").value = "";
    $("group-members").value = "";
    $("new-group").hidden = true;
    renderConversations();
    await openConversation(conversation.id);
  }

  async function addMembers() {
    const view = state.view;
    if (!view) return;
    const ids = await resolveUsernames($("add-member-names").value);
    if (ids.length === 0) return;
    const data = await api("POST", `/conversations/${enc(view.id)}/members`, { user_ids: ids });
    storeConversation(data);
    $("add-member-names").value = "";
    await ensureProfiles(ids);
    renderConversations();
    renderHeader();
  }

  // ---------------------------------------------------------------- the open conversation

  function closeConversation() {
    stopTyping();
    state.view = null;
    $("pane").hidden = true;
    $("empty").hidden = false;
    renderConversations();
  }

  async function openConversation(id) {
    const conversation = state.conversations.get(id);
    if (!conversation) return;
    if (state.view && state.view.id === id) return;
    stopTyping();
    const view = {
      id,
      items: [], // messages sorted by seq; pending ones (no seq yet) last
      byKey: new Map(), // id or "c:" + client_msg_id → message
      hasOlder: false,
      loadingOlder: false,
      readSent: 0,
    };
    state.view = view;
    $("empty").hidden = true;
    $("pane").hidden = false;
    $("message-list").replaceChildren();
    $("composer").value = "";
    renderHeader();
    renderTyping();
    renderConversations();

    const [page, full] = await Promise.all([
      api("GET", `/conversations/${enc(id)}/messages?limit=${HISTORY_PAGE}`),
      fetchConversation(id).catch(() => null),
    ]);
    if (state.view !== view) return;
    await ensureProfiles(page.messages.map((message) => message.sender_id));
    if (state.view !== view) return;
    for (const message of page.messages) upsertMessage(view, message, { scroll: false });
    view.hasOlder = Boolean(page.next_cursor);
    $("load-older").hidden = !view.hasOlder;
    if (full) renderHeader();
    scrollToBottom();
    refreshStatuses(view);
    markReadSoon();
    $("composer").focus();
  }

  async function loadOlder() {
    const view = state.view;
    if (!view || !view.hasOlder || view.loadingOlder) return;
    const oldest = view.items.find((message) => message.seq);
    if (!oldest) return;
    view.loadingOlder = true;
    try {
      const page = await api(
        "GET",
        `/conversations/${enc(view.id)}/messages?before=${oldest.seq}&limit=${HISTORY_PAGE}`,
      );
      if (state.view !== view) return;
      await ensureProfiles(page.messages.map((message) => message.sender_id));
      const box = $("messages");
      const before = box.scrollHeight;
      for (const message of page.messages) upsertMessage(view, message, { scroll: false });
      box.scrollTop += box.scrollHeight - before; // keep what was on screen in place
      view.hasOlder = Boolean(page.next_cursor);
      $("load-older").hidden = !view.hasOlder;
    } finally {
      view.loadingOlder = false;
    }
  }

  function renderHeader() {
    const view = state.view;
    if (!view) return;
    const conversation = state.conversations.get(view.id);
    if (!conversation) return;
    $("chat-title").textContent = titleOf(conversation);
    const dot = $("chat-presence");
    const peer = peerOf(conversation);
    let subtitle = "";
    if (conversation.kind === "group") {
      subtitle = `${conversation.member_count || (conversation.members || []).length} members`;
      dot.hidden = true;
    } else if (peer) {
      const profile = state.profiles.get(peer.user_id);
      const handle = profile ? `@${profile.username}` : "";
      if (peer.is_bot || (profile && profile.is_bot)) {
        subtitle = `${handle} · bot — send /help`;
        dot.hidden = true;
      } else {
        const presence = presenceText(peer.user_id);
        subtitle = [handle, presence].filter(Boolean).join(" · ");
        dot.hidden = !presence;
        dot.classList.toggle("online", Boolean(state.presence.get(peer.user_id)?.online));
      }
    }
    $("chat-subtitle").textContent = subtitle;
    // Admins and the owner may add people to a group.
    $("add-members-form").hidden = !(conversation.kind === "group" && ["owner", "admin"].includes(conversation.my_role));
  }

  function messageKey(message) {
    return message.id ? message.id : `c:${message.client_msg_id}`;
  }

  function sortKey(message) {
    return message.seq ? Number(message.seq) : Number.MAX_SAFE_INTEGER;
  }

  function newestSeq(view) {
    let newest = 0;
    for (const message of view.items) if (message.seq) newest = Math.max(newest, Number(message.seq));
    return newest;
  }

  function isNearBottom() {
    const box = $("messages");
    return box.scrollHeight - box.scrollTop - box.clientHeight < 80;
  }

  function scrollToBottom() {
    const box = $("messages");
    box.scrollTop = box.scrollHeight;
  }

  /** Adds or updates a message of the open conversation (by id or client_msg_id). */
  function upsertMessage(view, data, { scroll = true } = {}) {
    const stick = scroll && isNearBottom();
    let message =
      (data.id && view.byKey.get(data.id)) || (data.client_msg_id && view.byKey.get(`c:${data.client_msg_id}`)) || null;
    if (message) {
      const hadSeq = message.seq;
      const statuses = message.delivery_status;
      Object.assign(message, data);
      if (!data.delivery_status && statuses) message.delivery_status = statuses;
      if (data.id) {
        message.localStatus = null;
        view.byKey.set(data.id, message);
      }
      if (!hadSeq && message.seq) placeMessage(view, message);
      renderMessage(view, message);
    } else {
      message = Object.assign({}, data);
      view.byKey.set(messageKey(message), message);
      if (message.client_msg_id) view.byKey.set(`c:${message.client_msg_id}`, message);
      message.node = el("li");
      renderMessage(view, message);
      placeMessage(view, message);
    }
    if (stick || (scroll && state.me && message.sender_id === state.me.id)) scrollToBottom();
    return message;
  }

  /** Puts the message at its place by seq, in the list and in the DOM. */
  function placeMessage(view, message) {
    const index = view.items.indexOf(message);
    if (index >= 0) view.items.splice(index, 1);
    const key = sortKey(message);
    let at = view.items.length;
    while (at > 0 && sortKey(view.items[at - 1]) > key) at--;
    view.items.splice(at, 0, message);
    const next = view.items[at + 1];
    $("message-list").insertBefore(message.node, next ? next.node : null);
  }

  function statusOf(view, message) {
    if (message.localStatus) return message.localStatus;
    const conversation = state.conversations.get(view.id);
    let rank = STATUS_RANK.sent;
    for (const recipient of message.delivery_status || []) {
      rank = Math.max(rank, STATUS_RANK[recipient.status] ?? 0);
    }
    if (message.read_count > 0) rank = Math.max(rank, STATUS_RANK.read);
    else if (message.delivered_count > 0) rank = Math.max(rank, STATUS_RANK.delivered);
    if (conversation && message.seq) {
      for (const [userId, mark] of conversation.watermarks) {
        if (userId === state.me.id) continue;
        if (mark.read_seq >= message.seq) rank = Math.max(rank, STATUS_RANK.read);
        else if (mark.delivered_seq >= message.seq) rank = Math.max(rank, STATUS_RANK.delivered);
      }
    }
    return rank >= STATUS_RANK.read ? "read" : rank >= STATUS_RANK.delivered ? "delivered" : "sent";
  }

  function renderMessage(view, message) {
    const conversation = state.conversations.get(view.id);
    const mine = Boolean(state.me && message.sender_id === state.me.id);
    const li = message.node;
    li.className = `message ${mine ? "mine" : "theirs"}`;
    li.dataset.testid = "message";
    li.dataset.mine = String(mine);
    li.dataset.senderId = message.sender_id || "";
    if (message.id) li.dataset.id = message.id;
    if (message.seq) li.dataset.seq = String(message.seq);
    if (message.client_msg_id) li.dataset.clientMsgId = message.client_msg_id;

    const parts = [];
    if (!mine && conversation && conversation.kind === "group") {
      parts.push(el("div", "sender", nameOf(message.sender_id)));
    }
    const text = el("div", "text");
    text.dataset.testid = "message-text";
    if (message.deleted) {
      text.textContent = "message deleted";
      text.classList.add("muted");
    } else {
      text.textContent = message.content || "";
    }
    parts.push(text);
    if (!message.deleted && message.attachment && /^https?:\/\//i.test(message.attachment.url || "")) {
      const link = el("a", "attachment", `📎 ${message.attachment.name || "attachment"}`);
      link.href = message.attachment.url;
      link.target = "_blank";
      link.rel = "noopener noreferrer";
      parts.push(link);
    }
    const meta = el("div", "meta muted small");
    if (message.edited_at && !message.deleted) meta.append(el("span", "edited", "edited "));
    meta.append(el("span", "time", message.sent_at ? formatTime(message.sent_at) : ""));
    if (mine) {
      const status = statusOf(view, message);
      li.dataset.status = status;
      const mark = el("span", `status ${status}`, ` ${STATUS_MARK[status]}`);
      mark.dataset.testid = "status";
      mark.title = status === "failed" ? "not sent — click to retry" : status;
      meta.append(mark);
    } else {
      delete li.dataset.status;
    }
    parts.push(meta);
    li.replaceChildren(...parts);
  }

  function refreshStatuses(view) {
    for (const message of view.items) {
      if (state.me && message.sender_id === state.me.id) renderMessage(view, message);
    }
  }

  // ---------------------------------------------------------------- sending

  function newClientId() {
    if (window.crypto && typeof crypto.randomUUID === "function") return crypto.randomUUID();
    // randomUUID needs a secure context; getRandomValues does not.
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  async function sendMessage() {
    const view = state.view;
    if (!view) return;
    const content = $("composer").value;
    if (!content.trim()) return;
    $("composer").value = "";
    autoGrow();
    stopTyping();
    const local = upsertMessage(view, {
      client_msg_id: newClientId(),
      conversation_id: view.id,
      sender_id: state.me.id,
      kind: "text",
      content,
      sent_at: new Date().toISOString(),
      localStatus: "pending",
    });
    await deliver(view, local);
  }

  async function deliver(view, local) {
    const payload = { content: local.content, client_msg_id: local.client_msg_id };
    try {
      let message;
      if (state.socket && state.socket.connected) {
        message = await emit("message:send", { conversation_id: view.id, ...payload });
      } else {
        // Offline socket: REST does the same (idempotent by client_msg_id).
        message = await api("POST", `/conversations/${enc(view.id)}/messages`, payload);
      }
      local.localStatus = null;
      if (state.view === view) upsertMessage(view, message);
      noteMessage(message);
    } catch (error) {
      local.localStatus = "failed";
      if (state.view === view) renderMessage(view, local);
      showError(error);
    }
  }

  function retryFailed(node) {
    const view = state.view;
    if (!view) return;
    const message = view.items.find((m) => m.node === node);
    if (!message || message.localStatus !== "failed") return;
    message.localStatus = "pending";
    renderMessage(view, message);
    deliver(view, message);
  }

  // ---------------------------------------------------------------- incoming

  /** Updates the sidebar entry of a conversation for a new message. */
  function noteMessage(message) {
    const conversation = state.conversations.get(message.conversation_id);
    if (!conversation) return;
    const seq = Number(message.seq) || 0;
    conversation.last_seq = Math.max(conversation.last_seq || 0, seq);
    if (!conversation.last_message || (Number(conversation.last_message.seq) || 0) <= seq) {
      conversation.last_message = message;
    }
    // Sending moves the sender's own read watermark (chat does the same).
    if (state.me && message.sender_id === state.me.id) conversation.myRead = Math.max(conversation.myRead, seq);
    renderConversations();
  }

  async function onMessage(message) {
    if (!message || !message.conversation_id) return;
    const mine = Boolean(state.me && message.sender_id === state.me.id);
    if (!mine) clearTyping(message.conversation_id, message.sender_id);
    if (!state.conversations.has(message.conversation_id)) {
      await fetchConversation(message.conversation_id).catch(() => null);
    }
    await ensureProfiles([message.sender_id]);
    noteMessage(message);
    const view = state.view;
    if (view && view.id === message.conversation_id) {
      upsertMessage(view, message);
      markReadSoon();
    }
    if (!mine) markDeliveredSoon(message.conversation_id, Number(message.seq) || 0);
  }

  function onMessageUpdated(message) {
    const view = state.view;
    if (view && view.id === message.conversation_id && view.byKey.has(message.id)) upsertMessage(view, message, { scroll: false });
    const conversation = state.conversations.get(message.conversation_id);
    if (conversation && conversation.last_message && conversation.last_message.id === message.id) {
      conversation.last_message = Object.assign({}, conversation.last_message, message);
      renderConversations();
    }
  }

  function onMessageDeleted(event) {
    const view = state.view;
    if (view && view.id === event.conversation_id) {
      const message = view.byKey.get(event.message_id);
      if (message) {
        message.deleted = true;
        message.content = "";
        renderMessage(view, message);
      }
    }
    const conversation = state.conversations.get(event.conversation_id);
    if (conversation && conversation.last_message && conversation.last_message.id === event.message_id) {
      conversation.last_message = Object.assign({}, conversation.last_message, { deleted: true, content: "" });
      renderConversations();
    }
  }

  function onReceipt(receipt) {
    const conversation = state.conversations.get(receipt.conversation_id);
    if (!conversation) return;
    mergeWatermark(conversation, receipt.user_id, receipt.delivered_seq, receipt.read_seq);
    if (state.me && receipt.user_id === state.me.id) {
      // Read on another device of mine.
      conversation.myRead = Math.max(conversation.myRead, Number(receipt.read_seq) || 0);
      renderConversations();
    }
    if (state.view && state.view.id === receipt.conversation_id) refreshStatuses(state.view);
  }

  // "Delivered" also comes from acking message:new (when the gateway holds
  // chat's credential); saying it explicitly costs little and never moves
  // a watermark backwards.
  function markDeliveredSoon(conversationId, seq) {
    const entry = state.delivered.get(conversationId) || { seq: 0, timer: null };
    entry.seq = Math.max(entry.seq, seq);
    if (!entry.timer) {
      entry.timer = setTimeout(() => {
        state.delivered.delete(conversationId);
        emit("message:delivered", { conversation_id: conversationId, up_to_seq: entry.seq }).catch(() => {});
      }, 500);
    }
    state.delivered.set(conversationId, entry);
  }

  // ---------------------------------------------------------------- read receipts

  function windowActive() {
    return document.visibilityState === "visible" && document.hasFocus();
  }

  /** The newest message of the open conversation that is on screen. */
  function newestVisibleSeq(view) {
    const box = $("messages").getBoundingClientRect();
    if (box.height === 0) return 0;
    for (let i = view.items.length - 1; i >= 0; i--) {
      const message = view.items[i];
      if (!message.seq) continue;
      const rect = message.node.getBoundingClientRect();
      if (rect.top < box.bottom && rect.bottom > box.top) return Number(message.seq);
      if (rect.bottom <= box.top) break; // everything older is above the view
    }
    return 0;
  }

  let readTimer = null;
  function markReadSoon() {
    clearTimeout(readTimer);
    readTimer = setTimeout(markRead, 150);
  }

  async function markRead() {
    const view = state.view;
    if (!view || !windowActive()) return;
    const conversation = state.conversations.get(view.id);
    const seq = newestVisibleSeq(view);
    if (!seq || seq <= view.readSent || (conversation && seq <= conversation.myRead)) return;
    view.readSent = seq;
    const payload = { conversation_id: view.id, up_to_seq: seq };
    try {
      let receipt;
      if (state.socket && state.socket.connected) receipt = await emit("message:read", payload);
      else receipt = await api("POST", `/conversations/${enc(view.id)}/read`, { up_to_seq: seq });
      if (conversation) {
        conversation.myRead = Math.max(conversation.myRead, Number(receipt.read_seq) || seq);
        renderConversations();
      }
    } catch (error) {
      view.readSent = 0;
      console.warn("message:read", error);
    }
  }

  // ---------------------------------------------------------------- typing

  function onComposerInput() {
    autoGrow();
    const view = state.view;
    if (!view) return;
    const typing = state.outgoingTyping;
    if (!$("composer").value) {
      stopTyping();
      return;
    }
    const now = Date.now();
    if (!typing.active || typing.conversationId !== view.id || now - typing.lastStart > TYPING_RENEW_MS) {
      if (typing.active && typing.conversationId !== view.id) stopTyping();
      typing.active = true;
      typing.conversationId = view.id;
      typing.lastStart = now;
      emit("typing:start", { conversation_id: view.id }).catch(() => {});
    }
    clearTimeout(typing.timer);
    typing.timer = setTimeout(stopTyping, TYPING_IDLE_MS);
  }

  function stopTyping() {
    const typing = state.outgoingTyping;
    clearTimeout(typing.timer);
    if (!typing.active) return;
    typing.active = false;
    emit("typing:stop", { conversation_id: typing.conversationId }).catch(() => {});
  }

  function onTyping(event) {
    if (!event || !state.me || event.user_id === state.me.id) return;
    if (event.typing) {
      let users = state.typing.get(event.conversation_id);
      if (!users) state.typing.set(event.conversation_id, (users = new Map()));
      clearTimeout(users.get(event.user_id));
      users.set(
        event.user_id,
        setTimeout(() => clearTyping(event.conversation_id, event.user_id), TYPING_SHOW_MS),
      );
      ensureProfiles([event.user_id]).then(() => {
        renderTyping();
        renderConversations();
      });
    } else {
      clearTyping(event.conversation_id, event.user_id);
    }
    renderTyping();
    renderConversations();
  }

  function clearTyping(conversationId, userId) {
    const users = state.typing.get(conversationId);
    if (!users || !users.has(userId)) return;
    clearTimeout(users.get(userId));
    users.delete(userId);
    if (users.size === 0) state.typing.delete(conversationId);
    renderTyping();
    renderConversations();
  }

  function typingNames(conversationId) {
    const users = state.typing.get(conversationId);
    if (!users || users.size === 0) return "";
    const names = [...users.keys()].map(nameOf);
    if (names.length === 1) return `${names[0]} is typing…`;
    if (names.length === 2) return `${names[0]} and ${names[1]} are typing…`;
    return `${names.length} people are typing…`;
  }

  function renderTyping() {
    const node = $("typing");
    const text = state.view ? typingNames(state.view.id) : "";
    node.textContent = text;
    node.dataset.active = String(Boolean(text));
  }

  // ---------------------------------------------------------------- helpers

  function formatTime(iso) {
    const date = new Date(iso);
    if (Number.isNaN(date.getTime())) return "";
    const today = new Date();
    if (date.toDateString() === today.toDateString()) {
      return date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    }
    return date.toLocaleDateString([], { month: "short", day: "numeric" });
  }

  function formatWhen(iso) {
    const date = new Date(iso);
    if (Number.isNaN(date.getTime())) return "recently";
    const minutes = Math.round((Date.now() - date.getTime()) / 60_000);
    if (minutes < 1) return "just now";
    if (minutes < 60) return `${minutes} min ago`;
    return `${formatTime(iso)}`;
  }

  function autoGrow() {
    const box = $("composer");
    box.style.height = "auto";
    box.style.height = `${Math.min(box.scrollHeight, 160)}px`;
  }

  /** Runs an async UI action, showing its error in the banner. */
  function guarded(action) {
    return (event) => {
      if (event && typeof event.preventDefault === "function") event.preventDefault();
      Promise.resolve()
        .then(() => action(event))
        .catch(showError);
    };
  }

  // ---------------------------------------------------------------- wiring

  function wire() {
    $("banner-close").addEventListener("click", hideError);
    $("auth-form").addEventListener("submit", guarded(login));
    $("register").addEventListener("click", guarded(register));
    $("logout").addEventListener("click", guarded(logout));

    $("search").addEventListener("input", onSearchInput);
    $("search").addEventListener("keydown", (event) => {
      if (event.key !== "Enter") return;
      event.preventDefault();
      const first = $("search-results").querySelector("[data-testid=search-result]");
      if (first) guarded(() => openPrivateWith(first.dataset.userId))();
    });
    const openResult = guarded((event) => {
      const item = event.target.closest("[data-testid=search-result]");
      if (item) return openPrivateWith(item.dataset.userId);
      return undefined;
    });
    $("search-results").addEventListener("click", openResult);
    $("search-results").addEventListener("keydown", (event) => {
      if (event.key === "Enter") openResult(event);
    });

    $("new-group-toggle").addEventListener("click", () => {
      $("new-group").hidden = !$("new-group").hidden;
      if (!$("new-group").hidden) $("group-title").focus();
    });
    $("new-group").addEventListener("submit", guarded(createGroup));
    $("add-members-form").addEventListener("submit", guarded(addMembers));

    const openItem = guarded((event) => {
      const item = event.target.closest("[data-testid=conversation]");
      if (item) return openConversation(item.dataset.conversationId);
      return undefined;
    });
    $("conversations").addEventListener("click", openItem);
    $("conversations").addEventListener("keydown", (event) => {
      if (event.key === "Enter") openItem(event);
    });

    $("composer-form").addEventListener("submit", guarded(sendMessage));
    $("composer").addEventListener("input", onComposerInput);
    $("composer").addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        guarded(sendMessage)();
      }
    });
    $("composer").addEventListener("blur", () => stopTyping());

    $("load-older").addEventListener("click", guarded(loadOlder));
    let scrollTimer = null;
    $("messages").addEventListener("scroll", () => {
      if ($("messages").scrollTop < 40) guarded(loadOlder)();
      clearTimeout(scrollTimer);
      scrollTimer = setTimeout(markReadSoon, 150);
    });
    $("message-list").addEventListener("click", (event) => {
      const status = event.target.closest(".status.failed");
      if (status) retryFailed(status.closest("[data-testid=message]"));
    });

    window.addEventListener("focus", markReadSoon);
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState !== "visible") return;
      markReadSoon();
      // Timers are throttled in background tabs: catch up on the token.
      if (state.me) ensureFreshToken().catch(showError);
    });
  }

  async function boot() {
    wire();
    if (sessionStorage.getItem(REFRESH_KEY)) {
      // A reload: resume the session of this tab.
      let pair = null;
      try {
        pair = await refreshTokens();
      } catch (error) {
        // A refused refresh token already ended the session (endSession);
        // other failures (network) keep it for the next attempt.
        showError(error);
      }
      if (pair) {
        state.me = { id: pair.user_id, username: "", display_name: "" };
        await startSession().catch(showError);
        return;
      }
    }
    $("chat-view").hidden = true;
    $("auth-view").hidden = false;
    $("username").focus();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", boot);
  else boot();
})();
