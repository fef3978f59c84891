// OpenClaw image-generation provider `runapi`: Flux 2 through RunAPI, made by the fluxclaw CLI.
//
// This file holds no protocol logic. It checks what OpenClaw does not (model ids, count, 4K,
// ratios, input images), finds the key through OpenClaw's own provider auth, and runs
// `fluxclaw generate|remix --json` (the library's job engine: validation before paying, an
// idempotency key saved before the create, history, resume) with the key and base URL in the
// child's environment, never in its arguments. The facts below are fluxclaw.contract's;
// tests/contract/test_single_source.py checks them against it.

import { spawn } from "node:child_process";
import { constants } from "node:fs";
import { access, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { resolveApiKeyForProvider } from "openclaw/plugin-sdk/provider-auth-runtime";

const PROVIDER = "runapi";
// Model id -> fluxclaw family.
const MODELS = { "flux-2-pro": "pro", "flux-2-flex": "flex", "flux-2-max": "max" };
const DEFAULT_MODEL = "flux-2-pro";
const ASPECT_RATIOS = ["1:1", "4:3", "3:4", "16:9", "9:16", "3:2", "2:3"];
const RESOLUTIONS = { "1K": "1k", "2K": "2k" };
const RESOLUTIONS_BY_MODEL = { "flux-2-max": ["1K"] };
const MAX_INPUT_IMAGES = { "flux-2-pro": 8, "flux-2-flex": 8, "flux-2-max": 1 };
// Each image is its own task, run in parallel; Max (price set per account) one at a time.
const MAX_COUNT = { "flux-2-pro": 4, "flux-2-flex": 4, "flux-2-max": 1 };
const DEFAULT_BASE_URL = "https://runapi.ai";
const DEFAULT_TIMEOUT_MS = 300_000;
// fluxclaw's exit codes that the plugin reads (the contract's; tests/contract checks them).
const EXIT_CODES = { "timeout": 5 };
const GRACE_MS = 5_000; // after fluxclaw's own --timeout, before the child is stopped
const INSTALL = "pip install fluxclaw (or pipx install fluxclaw)";

// Where fluxclaw keeps its data (its history's folder, as Python's platformdirs puts it): the
// images this plugin makes stay there, so `fluxclaw history`, `gallery --from-history` and
// `resume` (after a time-out) find them after OpenClaw has copied them where it wants.
function fluxclawDataDir() {
  if (process.env.FLUXCLAW_DATA_DIR) return process.env.FLUXCLAW_DATA_DIR;
  const home = os.homedir();
  if (process.platform === "darwin") return path.join(home, "Library", "Application Support", "fluxclaw");
  if (process.platform === "win32") {
    return path.join(process.env.LOCALAPPDATA || path.join(home, "AppData", "Local"), "fluxclaw", "fluxclaw");
  }
  return path.join(process.env.XDG_DATA_HOME || path.join(home, ".local", "share"), "fluxclaw");
}
const MIME = { ".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp" };
const EXT = { "image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp" };

class RunapiError extends Error {}

function fail(message) {
  throw new RunapiError(`runapi: ${message}`);
}

function pluginConfig(req, registered) {
  return req?.cfg?.plugins?.entries?.[PROVIDER]?.config ?? registered ?? {};
}

async function findFluxclaw(configured) {
  const candidates = configured
    ? [configured]
    : (process.env.PATH ?? "").split(path.delimiter).filter(Boolean).map((dir) => path.join(dir, "fluxclaw"));
  for (const candidate of candidates) {
    try {
      await access(candidate, constants.X_OK);
      return candidate;
    } catch {
      // next
    }
  }
  fail(
    configured
      ? `fluxclaw is not at ${configured} (plugins.entries.runapi.config.fluxclawPath); install it with: ${INSTALL}`
      : `the fluxclaw command is not on PATH; install it with: ${INSTALL}, or set plugins.entries.runapi.config.fluxclawPath`,
  );
}

function checkRequest(req) {
  const model = String(req.model || DEFAULT_MODEL).replace(/^runapi\//, "");
  if (!MODELS[model]) {
    fail(`unknown model "${req.model}"; use runapi/flux-2-pro, runapi/flux-2-flex or runapi/flux-2-max`);
  }
  const count = req.count ?? 1;
  if (!Number.isInteger(count) || count < 1 || count > MAX_COUNT[model]) {
    fail(`${model} makes at most ${MAX_COUNT[model]} image(s) per call (each is its own task); ${count} were asked for`);
  }
  let resolution;
  if (req.resolution) {
    const allowed = RESOLUTIONS_BY_MODEL[model] ?? Object.keys(RESOLUTIONS);
    if (!allowed.includes(req.resolution)) {
      fail(`${model} makes ${allowed.join(" or ")} images; ${req.resolution} is not available`);
    }
    resolution = RESOLUTIONS[req.resolution];
  }
  if (req.aspectRatio && !ASPECT_RATIOS.includes(req.aspectRatio)) {
    fail(`aspect ratio ${req.aspectRatio} is not one of ${ASPECT_RATIOS.join(", ")}`);
  }
  const inputs = req.inputImages ?? [];
  if (inputs.length > MAX_INPUT_IMAGES[model]) {
    fail(`${model} takes at most ${MAX_INPUT_IMAGES[model]} input image(s); ${inputs.length} were given`);
  }
  return { model, family: MODELS[model], count, resolution, inputs };
}

// One fluxclaw task in a child process: its JSON answer, or an error naming the task id.
function runFluxclaw(command, args, env, timeoutMs, out) {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { env, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk) => (stdout += chunk));
    child.stderr.on("data", (chunk) => (stderr += chunk));
    let killed = false;
    const stop = setTimeout(() => {
      killed = true;
      child.kill("SIGINT"); // fluxclaw records the task as interrupted, then exits
      setTimeout(() => child.kill("SIGKILL"), 2_000).unref();
    }, timeoutMs + GRACE_MS);
    child.on("error", (error) => {
      clearTimeout(stop);
      reject(new RunapiError(`runapi: could not run fluxclaw (${error.message}); install it with: ${INSTALL}`));
    });
    child.on("close", (code) => {
      clearTimeout(stop);
      const line = stdout.trim().split("\n").filter((l) => l.startsWith("{")).pop();
      let answer = {};
      try {
        answer = line ? JSON.parse(line) : {};
      } catch {
        answer = {};
      }
      if (code === 0 && answer.paths?.length) {
        resolve(answer);
        return;
      }
      const taskId = answer.task_id;
      const reason = answer.error || stderr.trim().split("\n").pop() || `fluxclaw exited with ${code}`;
      if (killed || answer.exit_code === EXIT_CODES.timeout) {
        const resume = taskId ? `; task ${taskId} keeps running: finish it with \`fluxclaw resume ${taskId}\` (no new charge; the image is saved in ${out})` : "";
        reject(new RunapiError(`runapi: timed out after ${Math.round(timeoutMs / 1000)}s${resume}`));
        return;
      }
      reject(new RunapiError(`runapi: ${reason}`));
    });
  });
}

async function generateImage(req, registered) {
  const checked = checkRequest(req);
  const config = pluginConfig(req, registered);
  const command = await findFluxclaw(config.fluxclawPath);
  const auth = await resolveApiKeyForProvider({
    provider: PROVIDER,
    cfg: req.cfg,
    agentDir: req.agentDir,
    store: req.authStore,
  });
  const apiKey = auth?.apiKey;
  if (!apiKey) fail('No API key found for provider "runapi"; set RUNAPI_API_KEY or an auth profile');
  const baseUrl = config.baseUrl || process.env.RUNAPI_BASE_URL || DEFAULT_BASE_URL;
  const timeoutMs = req.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const work = await mkdtemp(path.join(os.tmpdir(), "fluxclaw-runapi-")); // mode 0700
  try {
    const sources = [];
    for (const [index, image] of checked.inputs.entries()) {
      const name = `input-${index + 1}${EXT[image.mimeType] ?? path.extname(image.fileName ?? "") ?? ".png"}`;
      const file = path.join(work, name);
      await writeFile(file, image.buffer, { mode: 0o600 });
      sources.push(file);
    }
    const env = { ...process.env, RUNAPI_API_KEY: apiKey, RUNAPI_BASE_URL: baseUrl };
    const seconds = Math.max(1, Math.floor((timeoutMs - 1_000) / 1000));
    const runs = [];
    const out = path.join(fluxclawDataDir(), "openclaw");
    await mkdir(out, { recursive: true, mode: 0o700 });
    for (let n = 0; n < checked.count; n++) {
      const args = [sources.length ? "remix" : "generate", "--json", "--timeout", String(seconds)];
      args.push("-m", checked.family, "-o", out + path.sep);
      for (const source of sources) args.push("-i", source);
      if (req.aspectRatio) args.push("--aspect-ratio", req.aspectRatio);
      if (checked.resolution) args.push("--resolution", checked.resolution);
      if (["png", "jpeg", "webp"].includes(req.outputFormat)) args.push("--format", req.outputFormat);
      args.push("--", req.prompt);
      runs.push(runFluxclaw(command, args, env, timeoutMs, out));
    }
    const settled = await Promise.allSettled(runs);
    const done = settled.filter((s) => s.status === "fulfilled").map((s) => s.value);
    if (!done.length) throw settled[0].reason;
    const images = [];
    for (const answer of done) {
      for (const file of answer.paths) {
        images.push({
          buffer: await readFile(file),
          mimeType: MIME[path.extname(file).toLowerCase()] ?? "image/png",
          fileName: path.basename(file),
          metadata: { taskId: answer.task_id, costUsd: answer.cost_usd, model: checked.model },
        });
      }
    }
    const failures = settled.filter((s) => s.status === "rejected").map((s) => s.reason.message);
    const cost = done.reduce((sum, a) => sum + (a.cost_usd ?? 0), 0);
    return {
      images,
      model: checked.model,
      metadata: {
        taskIds: done.map((a) => a.task_id),
        costUsd: Math.round(cost * 100) / 100,
        ...(failures.length ? { failures } : {}),
      },
    };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

export default {
  id: PROVIDER,
  name: "RunAPI Flux 2 (fluxclaw)",
  description: "Flux 2 Pro, Flex and Max images through RunAPI, made by the fluxclaw CLI",
  register(api) {
    const registered = api.pluginConfig;
    api.registerImageGenerationProvider({
      id: PROVIDER,
      label: "RunAPI (Flux 2)",
      defaultModel: DEFAULT_MODEL,
      models: Object.keys(MODELS),
      defaultTimeoutMs: DEFAULT_TIMEOUT_MS,
      isConfigured: () => true, // the key is looked up per call, with a clear error if missing
      capabilities: {
        generate: {
          maxCount: MAX_COUNT["flux-2-pro"],
          supportsSize: false,
          supportsAspectRatio: true,
          supportsResolution: true,
        },
        edit: {
          enabled: true,
          maxCount: MAX_COUNT["flux-2-pro"],
          maxInputImages: MAX_INPUT_IMAGES["flux-2-pro"],
          maxInputImagesByModel: { "flux-2-max": MAX_INPUT_IMAGES["flux-2-max"] },
          supportsSize: false,
          supportsAspectRatio: true,
          supportsResolution: true,
        },
        geometry: {
          aspectRatios: [...ASPECT_RATIOS],
          // 4K is listed only so that OpenClaw passes it through (it would quietly lower it
          // otherwise): the request is refused with a message that says 1K or 2K.
          resolutions: [...Object.keys(RESOLUTIONS), "4K"],
          resolutionsByModel: RESOLUTIONS_BY_MODEL,
        },
      },
      generateImage: (req) => generateImage(req, registered),
    });
  },
};
