// End-to-end test of the web client (crates/gateway/web) in headless
// Chromium, driven by playwright-core (installed with tests/socketio).
//
//   GATEWAY_URL=http://127.0.0.1:8080 node tests/web/client.mjs
//
// Two browser contexts (Alice, Bob) register fresh users through the UI;
// Alice finds Bob and opens a private chat, sends a message; Bob sees it in
// real time (sidebar, then the open chat); Alice sees it delivered; Bob's
// focused window reads it and Alice sees it read; Bob types and Alice sees
// the typing indicator; replies both ways arrive live; Alice opens a chat
// with helper_bot, sends /help and gets a reply.
//
// Environment: GATEWAY_URL (required), CHROMIUM_PATH [/usr/bin/chromium],
// STEP_TIMEOUT_MS [15000]. Prints one JSON line on success; on failure
// exits 1 naming the step, the reason, browser errors and screenshots
// (written to a fresh temporary directory).
import { randomBytes } from "node:crypto";
import { mkdtempSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";

// playwright-core lives in tests/socketio/node_modules (npm ci --prefix tests/socketio).
const require = createRequire(new URL("../socketio/package.json", import.meta.url));
let chromium;
try {
  ({ chromium } = require("playwright-core"));
} catch (error) {
  console.error(`playwright-core is missing: run npm ci --prefix tests/socketio (${error.message})`);
  process.exit(2);
}

const BASE = (process.env.GATEWAY_URL || "").replace(/\/+$/, "");
const CHROMIUM = process.env.CHROMIUM_PATH || "/usr/bin/chromium";
const STEP_MS = Math.min(Number(process.env.STEP_TIMEOUT_MS) || 15_000, 15_000);
const PASSWORD = "correct horse battery staple";
const BOT = "helper_bot";

if (!BASE) {
  console.error("GATEWAY_URL is required, e.g. GATEWAY_URL=http://127.0.0.1:8080 node tests/web/client.mjs");
  process.exit(2);
}

const started = Date.now();
const steps = [];
const pages = {}; // name → page
const pageErrors = []; // uncaught exceptions in the pages: these fail the test
const consoleErrors = []; // console errors (e.g. failed requests): reported on failure
let current = "launch";
let browser;

function suffix() {
  return randomBytes(4).toString("hex");
}

/** Runs one named step within STEP_MS and records its duration. */
async function step(name, action) {
  current = name;
  const begin = Date.now();
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`step timed out after ${STEP_MS} ms`)), STEP_MS);
  });
  try {
    const value = await Promise.race([action(), timeout]);
    steps.push({ step: name, ms: Date.now() - begin });
    return value;
  } finally {
    clearTimeout(timer);
  }
}

/** Polls `check` until it returns something truthy (within the step's time). */
async function until(what, check, ms = STEP_MS - 500) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    try {
      const value = await check();
      if (value) return value;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${what}${last ? ` (last error: ${last.message})` : ""}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

async function newPage(name) {
  const context = await browser.newContext({ viewport: { width: 1100, height: 760 } });
  const page = await context.newPage();
  page.setDefaultTimeout(STEP_MS);
  page.on("pageerror", (error) => pageErrors.push(`${name}: ${error.stack || error.message}`));
  page.on("console", (message) => {
    if (message.type() === "error" || message.type() === "warning") {
      consoleErrors.push(`${name}: ${message.type()} ${message.text()}`);
    }
  });
  pages[name] = page;
  return page;
}

/** Registers a fresh user through the form; resolves when the socket is online. */
async function registerUser(page, name) {
  const username = `${name}_${suffix()}`;
  await page.goto(`${BASE}/`);
  await page.locator("#auth-view:not([hidden])").waitFor();
  await page.fill("#username", username);
  await page.fill("#password", PASSWORD);
  await page.fill("#email", `${username}@example.com`);
  await page.fill("#display-name", name[0].toUpperCase() + name.slice(1));
  await page.click("#register");
  await page.locator("#chat-view:not([hidden])").waitFor();
  await page.locator('#connection[data-state="online"]').waitFor();
  const userId = await page.getAttribute("#me", "data-user-id");
  return { username, userId };
}

/** Searches `username` in the new-chat box (retrying: profiles and bots
 *  appear asynchronously) and opens the private chat with them. */
async function openChatWith(page, username) {
  const result = page.locator(`[data-testid=search-result][data-username="${username}"]`);
  await until(`${username} in the search results`, async () => {
    await page.fill("#search", "");
    await page.fill("#search", username);
    try {
      await result.waitFor({ timeout: 2000 });
      return true;
    } catch {
      return false;
    }
  });
  await result.click();
  await page.locator(`[data-testid=conversation].active[data-peer-username="${username}"]`).waitFor();
  await page.locator("#pane:not([hidden])").waitFor();
  return page.getAttribute("[data-testid=conversation].active", "data-conversation-id");
}

/** Types and sends `text`; resolves with the message element once it is sent. */
async function send(page, text) {
  await page.fill("#composer", text);
  await page.click("#send");
  const message = page.locator("[data-testid=message][data-mine=true]", { hasText: text }).last();
  await until(`"${text}" to be sent`, async () =>
    ["sent", "delivered", "read"].includes(await message.getAttribute("data-status")),
  );
  return message;
}

async function statusOf(message) {
  return message.getAttribute("data-status");
}

async function screenshots() {
  const dir = mkdtempSync(join(tmpdir(), "web-client-"));
  const paths = [];
  for (const [name, page] of Object.entries(pages)) {
    const path = join(dir, `${name}.png`);
    try {
      await page.screenshot({ path, fullPage: true, timeout: 5000 });
      paths.push(path);
    } catch (error) {
      paths.push(`${path} (failed: ${error.message})`);
    }
  }
  return paths;
}

async function main() {
  browser = await step("launch", () =>
    chromium.launch({ executablePath: CHROMIUM, headless: true, args: ["--no-sandbox"] }),
  );
  const alicePage = await newPage("alice");
  const bobPage = await newPage("bob");

  const [alice, bob] = await step("register", () =>
    Promise.all([registerUser(alicePage, "alice"), registerUser(bobPage, "bob")]),
  );

  const conversationId = await step("alice_opens_chat_with_bob", () => openChatWith(alicePage, bob.username));

  const first = `hello bob ${suffix()}`;
  const firstMessage = await step("alice_sends", () => send(alicePage, first));

  await step("bob_sees_it_live_in_sidebar", async () => {
    const item = bobPage.locator(`[data-testid=conversation][data-conversation-id="${conversationId}"]`);
    await item.locator("[data-testid=preview]", { hasText: first }).waitFor();
    await until("an unread badge of 1 at Bob", async () =>
      (await item.locator("[data-testid=unread]").getAttribute("data-count")) === "1",
    );
  });

  await step("alice_sees_delivered", () =>
    until("✓✓ delivered on Alice's message", async () =>
      ["delivered", "read"].includes(await statusOf(firstMessage)),
    ),
  );

  await step("bob_opens_chat_and_reads", async () => {
    await bobPage.bringToFront();
    await bobPage.click(`[data-testid=conversation][data-conversation-id="${conversationId}"]`);
    await bobPage.locator("[data-testid=message][data-mine=false]", { hasText: first }).waitFor();
    const focused = await bobPage.evaluate(() => document.hasFocus());
    if (!focused) throw new Error("Bob's page does not have focus, so it will not send read receipts");
  });

  await step("alice_sees_read", () =>
    until("read state on Alice's message", async () => (await statusOf(firstMessage)) === "read"),
  );

  await step("alice_sees_bob_typing", async () => {
    await bobPage.locator("#composer").pressSequentially("typing a reply", { delay: 30 });
    await until("the typing indicator at Alice", async () =>
      /typing/i.test((await alicePage.textContent("#typing")) || ""),
    );
  });

  const reply = `hi alice ${suffix()}`;
  await step("alice_sees_reply_live", async () => {
    await send(bobPage, reply);
    await alicePage.locator("[data-testid=message][data-mine=false]", { hasText: reply }).waitFor();
    await until("the typing indicator to clear at Alice", async () =>
      ((await alicePage.textContent("#typing")) || "").trim() === "",
    );
  });

  const second = `again ${suffix()}`;
  await step("bob_sees_message_live_in_open_chat", async () => {
    await send(alicePage, second);
    await bobPage.locator("[data-testid=message][data-mine=false]", { hasText: second }).waitFor();
  });

  await step("alice_opens_chat_with_bot", () => openChatWith(alicePage, BOT));

  const botReply = await step("bot_replies_to_help", async () => {
    const help = await send(alicePage, "/help");
    const helpSeq = Number(await help.getAttribute("data-seq"));
    // The bot's answer: a message from the peer after /help.
    const handle = await alicePage.waitForFunction((after) => {
      const replies = [...document.querySelectorAll("[data-testid=message][data-mine=false]")].filter(
        (node) => Number(node.dataset.seq) > after,
      );
      const text = replies.length ? replies[0].querySelector("[data-testid=message-text]").textContent : "";
      return text.trim() ? text : null;
    }, helpSeq);
    return handle.jsonValue();
  });

  if (pageErrors.length) {
    current = "page_errors";
    throw new Error(`uncaught errors in the pages:\n  ${pageErrors.join("\n  ")}`);
  }

  await browser.close();
  console.log(
    JSON.stringify({
      scenario: "web-client",
      ok: true,
      total_ms: Date.now() - started,
      alice: alice.username,
      bob: bob.username,
      conversation_id: conversationId,
      bot_reply: botReply.slice(0, 120),
      steps,
    }),
  );
}

try {
  await main();
  process.exit(0);
} catch (error) {
  const shots = browser ? await screenshots() : [];
  console.error(`web client test failed at step "${current}": ${error.message}`);
  if (pageErrors.length && current !== "page_errors") {
    console.error(`uncaught errors in the pages:\n  ${pageErrors.join("\n  ")}`);
  }
  if (consoleErrors.length) console.error(`browser console:\n  ${consoleErrors.slice(-20).join("\n  ")}`);
  if (shots.length) console.error(`screenshots: ${shots.join(" ")}`);
  console.error(`steps done: ${JSON.stringify(steps)}`);
  if (browser) await browser.close().catch(() => {});
  process.exit(1);
}
