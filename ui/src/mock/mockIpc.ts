// Dev-only fake backend (never in a default production build): `npm run dev` then open
// `/?mock`, or `npm run build:mock`. URL parameters: `mock=empty` (no models, no history),
// `mock=error` (history fails), `open=<conversation id>`, `drawer`, `send=<text>`,
// `view=compare|leaderboard|models` (the screen to open on; see App.svelte).
import { mockIPC } from '@tauri-apps/api/mocks';
import type { Channel } from '@tauri-apps/api/core';
import type {
  ChatSettings,
  Preset,
  ApiServerSettings,
  ApiServerStatus,
  ColumnFigures,
  CompareOutput,
  CompareRequest,
  DiffOp,
  DownloadProgress,
  PartialDownload,
  PlacementEstimate,
  Leaderboard,
  ChatEvent,
  ChatHandle,
  ChatRequest,
  ConversationSummary,
  ConversationView,
  MessageView,
  Metrics,
  ModelInfo,
  Usage,
} from '../lib/types';

const GB = 1024 ** 3;

/**
 * A 28-layer model on a fake GPU with 4 GB free (1 GB kept free, as llama.cpp's fit
 * does): auto offloads what fits, a set count is obeyed, 0 keeps all on the CPU.
 */
function mockPlacement(m: ModelInfo, kv: number, total: number, avail: number): PlacementEstimate {
  const n = 28;
  const free = 4 * GB;
  const layer = (m.size_bytes * 0.9) / n;
  const kvLayer = kv / n;
  const output = m.size_bytes * 0.1;
  const compute = 300 * 1024 ** 2;
  const fitting = Math.max(0, Math.min(n, Math.floor((free - GB - output - compute) / (layer + kvLayer))));
  const ngl = m.gpu_layers === null ? fitting + 1 : Math.min(m.gpu_layers, n + 1);
  const onGpu = Math.max(0, ngl - 1);
  const vram = ngl > 0 ? output + onGpu * (layer + kvLayer) + compute : 0;
  const ram = total - onGpu * (layer + kvLayer) - (ngl > 0 ? output : 0);
  const device = { name: 'Vulkan0', description: 'Mock GPU', free_bytes: free, total_bytes: 8 * GB, layers: onGpu, output: ngl > 0, weights_bytes: output + onGpu * layer, kv_cache_bytes: onGpu * kvLayer, compute_bytes: ngl > 0 ? compute : 0, vram_bytes: vram, fit: vram <= free - GB ? 'fits' : vram <= free ? 'tight' : 'wont_fit' } as const;
  return {
    layer_count: n,
    gpu_layers_setting: m.gpu_layers === null ? { mode: 'auto' } : { mode: 'count', layers: m.gpu_layers },
    gpu_layers: ngl,
    layers_on_gpu: onGpu,
    output_on_gpu: ngl > 0,
    devices: [device],
    has_gpu: true,
    ram_weights_bytes: Math.max(0, ram - (kv - onGpu * kvLayer) - 180 * 1024 ** 2),
    ram_kv_cache_bytes: kv - onGpu * kvLayer,
    ram_compute_bytes: 120 * 1024 ** 2,
    ram_overhead_bytes: 60 * 1024 ** 2,
    ram_bytes: ram,
    ram_available_bytes: avail,
    ram_fit: ram * 1.25 <= avail ? 'fits' : ram <= avail ? 'tight' : 'wont_fit',
    vram_bytes: vram,
    vram_fit: ngl > 0 ? device.fit : null,
    rpc_servers: [],
    summary: '',
    notes: [],
  };
}
const models: ModelInfo[] = [
  {
    id: 'qwen3-0.6b-q8',
    name: 'Qwen3 0.6B Q8_0',
    path: '/home/you/.local/share/conclave/models/Qwen3-0.6B-Q8_0.gguf',
    size_bytes: 0.64 * GB,
    architecture: 'qwen3',
    quantization: 'Q8_0',
    parameter_count: 751_632_384,
    context_length: 40960,
    has_chat_template: true,
    reasoning_format: 'deepseek',
    error: null,
    gpu_layers: null,
  },
  {
    id: 'gemma3-1b-q4',
    name: 'Gemma 3 1B it Q4_K_M',
    path: '/home/you/.local/share/conclave/models/gemma-3-1b-it-Q4_K_M.gguf',
    size_bytes: 0.81 * GB,
    architecture: 'gemma3',
    quantization: 'Q4_K_M',
    parameter_count: 999_885_952,
    context_length: 32768,
    has_chat_template: true,
    reasoning_format: null,
    error: null,
    gpu_layers: null,
  },
  {
    id: 'broken',
    name: 'half-downloaded.gguf',
    path: '/home/you/Downloads/half-downloaded.gguf',
    size_bytes: 0.2 * GB,
    architecture: null,
    quantization: null,
    parameter_count: null,
    context_length: null,
    has_chat_template: false,
    reasoning_format: null,
    error: 'truncated file: tensor data ends at 214 MB, expected 1.1 GB',
    gpu_layers: null,
  },
];

function metrics(p: Partial<Metrics> = {}): Metrics {
  return {
    ttft_ms: 412,
    prompt_eval_ms: 380,
    prompt_tps: 215.4,
    gen_ms: 9120,
    gen_tps: 41.7,
    wall_ms: 9540,
    thinking_ms: 5230,
    answer_ms: 4310,
    threads: 8,
    peak_rss_bytes: 1.3 * GB,
    cpu_seconds: 71.2,
    energy_wh: 0.0412,
    energy_thinking_wh: 0.0226,
    energy_answer_wh: 0.0186,
    energy_method: 'rapl',
    dropped_messages: 0,
    seed: 1234567,
    template: 'chatml',
    reasoning_format: 'deepseek',
    thinking: 'auto',
    budget_cut_at: null,
    reasoning_cut_off: false,
    thoughts_dropped_tokens: 0,
    drafted_tokens: 530,
    accepted_tokens: 412,
    first_reasoning_ms: null,
    first_answer_ms: null,
    context_overflow: 'drop_oldest',
    ...p,
  };
}
const usage = (r: number, a: number): Usage => ({
  prompt_tokens: 82,
  cached_prompt_tokens: 0,
  completion_tokens: r + a,
  reasoning_tokens: r,
  answer_tokens: a,
});

const iso = (minutesAgo: number) => new Date(Date.now() - minutesAgo * 60000).toISOString();

const ANSWER = `Here is a small, iterative version — it avoids recursion limits and runs in **O(n)**:

\`\`\`python
def fib(n: int) -> int:
    """Return the n-th Fibonacci number."""
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a

print([fib(i) for i in range(10)])  # [0, 1, 1, 2, 3, 5, 8, 13, 21, 34]
\`\`\`

The closed form is Binet's formula, $F_n = \\frac{\\varphi^n - \\psi^n}{\\sqrt 5}$ with $\\varphi = \\frac{1+\\sqrt5}{2}$:

$$F_n = \\frac{1}{\\sqrt{5}}\\left(\\left(\\frac{1+\\sqrt{5}}{2}\\right)^n - \\left(\\frac{1-\\sqrt{5}}{2}\\right)^n\\right)$$

| n | F(n) |
|---|------|
| 10 | 55 |
| 20 | 6765 |

See [the OEIS entry](https://oeis.org/A000045) for more.`;

const THOUGHT = `The user wants a Fibonacci function in Python. Recursion is the classic answer but it is exponential and hits the recursion limit; an iterative loop with two variables is O(n) time and O(1) memory. I could also mention Binet's closed form, with a short table of values so they can check their own output.`;

function sampleConversations(): Map<string, ConversationView> {
  const convs = new Map<string, ConversationView>();
  const fibMsgs: MessageView[] = [
    {
      id: 'u1', parent_id: null, role: 'user', content: 'Write a fast Fibonacci function in Python, and tell me the closed form.',
      reasoning: null, status: 'complete', error: null, model_name: null, created_at: iso(62), metrics: null, usage: null, stop_reason: null,
    },
    {
      id: 'a1', parent_id: 'u1', role: 'assistant', content: 'A recursive version:\n\n```python\ndef fib(n):\n    return n if n < 2 else fib(n-1) + fib(n-2)\n```',
      reasoning: 'Simple recursion is easiest to read.', status: 'complete', error: null, model_name: 'Qwen3 0.6B Q8_0',
      created_at: iso(61), metrics: metrics({ wall_ms: 3100, thinking_ms: 900, answer_ms: 2200 }), usage: usage(12, 60), stop_reason: 'eos',
    },
    {
      id: 'a2', parent_id: 'u1', role: 'assistant', content: ANSWER, reasoning: THOUGHT, status: 'complete', error: null,
      model_name: 'Qwen3 0.6B Q8_0', created_at: iso(60), metrics: metrics(), usage: usage(218, 162), stop_reason: 'eos',
    },
  ];
  convs.set('c1', { id: 'c1', title: 'Fast Fibonacci in Python', system_prompt: '', settings: null, current_leaf_id: 'a2', messages: fibMsgs });
  convs.set('c2', {
    id: 'c2', title: 'Mutex vs semaphore', system_prompt: '', settings: null, current_leaf_id: 'a3',
    messages: [
      { id: 'u3', parent_id: null, role: 'user', content: 'Mutex vs semaphore in one paragraph?', reasoning: null, status: 'complete', error: null, model_name: null, created_at: iso(60 * 26), metrics: null, usage: null, stop_reason: null },
      { id: 'a3', parent_id: 'u3', role: 'assistant', content: 'A **mutex** is a lock with an owner: only the thread that locked it may unlock it, and it guards one critical section. A **semaphore** is a counter: it lets up to *n* holders in and any thread may signal it, so it fits pools and producer/consumer hand-offs.', reasoning: null, status: 'complete', error: null, model_name: 'Gemma 3 1B it Q4_K_M', created_at: iso(60 * 26), metrics: metrics({ thinking_ms: 0, answer_ms: 2100, wall_ms: 2500, energy_method: 'cpu-time', energy_thinking_wh: 0, energy_answer_wh: 0 }), usage: usage(0, 71), stop_reason: 'eos' },
    ],
  });
  convs.set('c3', {
    id: 'c3', title: 'Trip ideas for a rainy weekend', system_prompt: '', settings: null, current_leaf_id: 'a4',
    messages: [
      { id: 'u4', parent_id: null, role: 'user', content: 'Rainy weekend ideas?', reasoning: null, status: 'complete', error: null, model_name: null, created_at: iso(60 * 24 * 9), metrics: null, usage: null, stop_reason: null },
      { id: 'a4', parent_id: 'u4', role: 'assistant', content: 'Museums, a cooking project', reasoning: null, status: 'interrupted', error: null, model_name: 'Gemma 3 1B it Q4_K_M', created_at: iso(60 * 24 * 9), metrics: null, usage: null, stop_reason: null },
    ],
  });
  return convs;
}

export function installMockIpc(params: URLSearchParams): void {
  const scenario = params.get('mock') ?? '';
  const catalog = scenario === 'empty' ? [] : [...models];
  const convs = scenario === 'empty' ? new Map<string, ConversationView>() : sampleConversations();
  const pinned = new Set(scenario === 'empty' ? [] : ['c2']);
  const presets = new Map<string, Preset>();
  let seq = 100;
  const timers = new Map<string, number[]>();

  const summary = (c: ConversationView): ConversationSummary => {
    const last = c.messages[c.messages.length - 1];
    return {
      id: c.id,
      title: c.title,
      created_at: c.messages[0]?.created_at ?? iso(0),
      updated_at: last?.created_at ?? iso(0),
      pinned: pinned.has(c.id),
      message_count: c.messages.length,
      last_model: [...c.messages].reverse().find((m) => m.model_name)?.model_name ?? null,
    };
  };
  const fail = (code: string, message: string) => Promise.reject({ code, message });

  function stream(req: ChatRequest, ch: Channel<ChatEvent>): ChatHandle {
    let conv = req.conversation_id ? convs.get(req.conversation_id) : undefined;
    if (!conv) {
      conv = { id: `c${++seq}`, title: req.content.slice(0, 40) || 'New chat', system_prompt: '', settings: req.settings, current_leaf_id: null, messages: [] };
      convs.set(conv.id, conv);
    }
    const c = conv;
    const model = catalog.find((m) => m.id === req.model_id);
    let userId: string;
    if (req.regenerate_of) {
      userId = c.messages.find((m) => m.id === req.regenerate_of)?.parent_id ?? '';
    } else {
      userId = `m${++seq}`;
      const parent = req.edit_of
        ? (c.messages.find((m) => m.id === req.edit_of)?.parent_id ?? null)
        : (req.parent_id ?? c.current_leaf_id);
      c.messages.push({ id: userId, parent_id: parent, role: 'user', content: req.content, reasoning: null, status: 'complete', error: null, model_name: null, created_at: iso(0), metrics: null, usage: null, stop_reason: null });
    }
    const asstId = `m${++seq}`;
    const msg: MessageView = { id: asstId, parent_id: userId, role: 'assistant', content: '', reasoning: null, status: 'streaming', error: null, model_name: model?.name ?? null, created_at: new Date(Date.now() + 1).toISOString(), metrics: null, usage: null, stop_reason: null };
    c.messages.push(msg);
    c.current_leaf_id = asstId;
    const requestId = `r${++seq}`;
    const thinks = model?.reasoning_format != null && req.settings.think !== 'off';
    const words = (s: string) => s.match(/\S+\s*|\n/g) ?? [];
    const events: ChatEvent[] = [
      { type: 'started', request_id: requestId, model: model?.name ?? '', seed: 42, reasoning_format: thinks ? 'deepseek' : 'none', prompt_tokens: 82, cached_prompt_tokens: 0 },
      ...(thinks ? words(THOUGHT).map((t): ChatEvent => ({ type: 'reasoning', text: t })) : []),
      ...words(ANSWER).map((t): ChatEvent => ({ type: 'token', text: t })),
    ];
    const list: number[] = [];
    timers.set(requestId, list);
    const send = (e: ChatEvent) => {
      if (e.type === 'reasoning') msg.reasoning = (msg.reasoning ?? '') + e.text;
      if (e.type === 'token') msg.content += e.text;
      ch.onmessage(e);
    };
    const nR = thinks ? words(THOUGHT).length : 0;
    const nA = words(ANSWER).length;
    const finish = (stop: 'eos' | 'cancelled') => {
      const done: ChatEvent = { type: 'done', stop_reason: stop, usage: usage(nR, nA), metrics: metrics({ thinking_ms: thinks ? 1400 : 0 }) };
      msg.status = stop === 'eos' ? 'complete' : 'cancelled';
      if (done.type === 'done') {
        msg.metrics = done.metrics;
        msg.usage = done.usage;
        msg.stop_reason = stop;
      }
      ch.onmessage(done);
      timers.delete(requestId);
    };
    (list as number[] & { finish?: typeof finish }).finish = finish;
    events.forEach((e, i) => list.push(window.setTimeout(() => send(e), 300 + i * 25)));
    list.push(window.setTimeout(() => finish('eos'), 300 + events.length * 25 + 50));
    return { request_id: requestId, conversation_id: c.id, user_message_id: userId, assistant_message_id: asstId };
  }

  const compares = new Map<string, { id: string; files: string[]; cancel: () => void }>();
  const downloads = new Map<string, () => void>();
  // Unfinished downloads, as the models folder's .part files would list them.
  const partials: PartialDownload[] = [
    { file_name: 'Qwen3-8B-Q4_K_M.gguf', url: 'https://huggingface.co/Qwen/Qwen3-8B-GGUF/resolve/main/Qwen3-8B-Q4_K_M.gguf', bytes_done: 2.1 * 1024 ** 3, total: 5.03 * 1024 ** 3, has_sha256: false, in_progress: false, modified_secs: 1764500000 },
  ];
  const fileOf = (id: string) => catalog.find((m) => m.id === id)?.path.split('/').pop() ?? id;

  function compare(req: CompareRequest, ch: Channel<CompareOutput>) {
    const id = `run${++seq}`;
    const blind = !!req.options.blind;
    // Blind runs are shuffled by the core; a fixed reversal shows the same thing here.
    const cols = blind ? [...req.columns].reverse() : req.columns;
    const files = cols.map((c) => fileOf(c.model_id));
    const label = (i: number) => (blind ? `Model ${String.fromCharCode(65 + i)}` : files[i].replace(/\.gguf$/, ''));
    const timers: number[] = [];
    let cancelled = false;
    const at = (ms: number, f: () => void) => timers.push(window.setTimeout(f, ms));
    ch.onmessage({ type: 'plan', run_id: id, conversation_id: 'c1', user_message_id: `${id}-u`, blind, sequential: cols.length > 3, reason: cols.length > 3 ? 'the models need 5.2 GB together, 4.1 GB is free' : null, workers: cols.length, concurrency: cols.length > 3 ? 1 : cols.length, threads_per_worker: 2, memory_needed_bytes: 2.1 * GB, memory_budget_bytes: 6 * GB, columns: cols.map((_, i) => ({ column: i, label: label(i), model: blind ? null : files[i], lane: i })) });
    const words = (t: string) => t.match(/\S+\s*|\n/g) ?? [];
    const answers = [ANSWER.slice(0, 420), ANSWER.slice(0, 300).replace('iterative', 'loop-based'), 'Use `functools.lru_cache` on the recursive version; it is short and fast enough.', 'An iterative loop is the fastest simple option.'];
    const figures: ColumnFigures[] = [];
    let last = 0;
    cols.forEach((c, i) => {
      const model = catalog.find((m) => m.id === c.model_id);
      const thinks = model?.reasoning_format != null && c.settings.think !== 'off';
      const start = 200 + i * 80;
      at(start, () => ch.onmessage({ type: 'loaded', lane: i, columns: [i], pid: 4000 + i, threads: 2, load_ms: 300 }));
      at(start + 20, () => ch.onmessage({ column: i, type: 'started', request_id: `${id}-${i}`, model: blind ? label(i) : files[i], seed: 7, reasoning_format: thinks ? 'deepseek' : 'none', prompt_tokens: 40, cached_prompt_tokens: 0 }));
      const events: CompareOutput[] = [
        ...(thinks ? words(THOUGHT.slice(0, 200)).map((t): CompareOutput => ({ column: i, type: 'reasoning', text: t })) : []),
        ...words(answers[i % answers.length]).map((t): CompareOutput => ({ column: i, type: 'token', text: t })),
      ];
      const step = 25 + i * 15;
      events.forEach((e, k) => at(start + 60 + k * step, () => ch.onmessage(e)));
      const end = start + 60 + events.length * step;
      last = Math.max(last, end);
      const nR = thinks ? words(THOUGHT.slice(0, 200)).length : 0;
      const nA = events.length - nR;
      const tps = 1000 / step;
      figures.push({ column: i, label: label(i), model: blind ? null : files[i], status: 'done', error: null, stop_reason: 'eos', ttft_ms: 60, tokens_per_second: tps, thinking_tokens: nR, answer_tokens: nA, completion_tokens: nR + nA, seconds: (end - start) / 1000, energy_wh: 0.002 * (i + 1) * (events.length / 40), energy_method: 'rapl', threads: 2, drafted_tokens: 0, accepted_tokens: 0, message_id: `${id}-m${i}` });
      at(end, () => ch.onmessage({ column: i, type: 'done', stop_reason: 'eos', usage: usage(nR, nA), metrics: metrics({ gen_tps: tps, ttft_ms: 60, wall_ms: end - start, energy_wh: figures[i].energy_wh }) }));
    });
    const summary = () => {
      const ok = figures.filter((f) => f.status === 'done');
      const best = (key: 'tokens_per_second' | 'energy_wh', hi: boolean) => ok.length ? ok.reduce((a, b) => ((hi ? b[key] > a[key] : b[key] < a[key]) ? b : a)).column : null;
      ch.onmessage({ type: 'summary', run_id: id, blind, sequential: cols.length > 3, reason: null, columns: figures, fastest: best('tokens_per_second', true), cheapest: best('energy_wh', false), generation_seconds: last / 1000, aggregate_tokens_per_second: figures.reduce((a, f) => a + f.tokens_per_second, 0) });
      compares.get(id)!.cancel = () => {};
    };
    at(last + 40, summary);
    compares.set(id, {
      id,
      files,
      cancel: () => {
        if (cancelled) return;
        cancelled = true;
        timers.forEach((t) => clearTimeout(t));
        figures.forEach((f) => { f.status = 'cancelled'; f.stop_reason = 'cancelled'; });
        figures.forEach((f) => ch.onmessage({ column: f.column, type: 'error', code: 'cancelled', message: 'Stopped' }));
        summary();
      },
    });
    return { handle: id, run_id: id, conversation_id: 'c1', user_message_id: `${id}-u` };
  }

  function wordDiff(a: string, b: string): DiffOp[] {
    // Good enough for looking at the screen; the real diff is the core's.
    const wa = a.match(/\S+\s*/g) ?? [];
    const wb = b.match(/\S+\s*/g) ?? [];
    const out: DiffOp[] = [];
    const push = (op: DiffOp['op'], text: string) => {
      const prev = out[out.length - 1];
      if (prev && prev.op === op) prev.text += text;
      else out.push({ op, text });
    };
    for (let i = 0; i < Math.max(wa.length, wb.length); i++) {
      if (wa[i] === wb[i]) push('equal', wa[i]);
      else {
        if (wa[i] !== undefined) push('delete', wa[i]);
        if (wb[i] !== undefined) push('insert', wb[i]);
      }
    }
    return out;
  }

  function board(tag: string | null): Leaderboard {
    const rows = [
      { name: 'Qwen3-0.6B-Q8_0.gguf', elo: 1042.3, bt: 1061.2, lo: 990.4, hi: 1132.0, w: 9, t: 2, l: 4, bad: 1 },
      { name: 'gemma-3-1b-it-Q4_K_M.gguf', elo: 987.5, bt: 969.1, lo: 899.7, hi: 1038.5, w: 5, t: 2, l: 8, bad: 1 },
      { name: 'SmolLM2-135M-Instruct.Q4_1.gguf', elo: 970.2, bt: 940.0, lo: 850.1, hi: 1029.9, w: 1, t: 0, l: 3, bad: 0 },
    ];
    const picked = tag ? rows.slice(0, 2) : rows;
    return {
      tag,
      votes: tag ? 6 : 17,
      games: tag ? 6 : 19,
      regularized: true,
      rows: picked.map((r, i) => ({ rank: i + 1, model_id: r.name.slice(0, 8), name: r.name, votes: r.w + r.t + r.l + r.bad, wins: r.w, losses: r.l, ties: r.t, both_bad: r.bad, elo: r.elo, bt_score: r.bt, bt_ci_low: r.lo, bt_ci_high: r.hi, bt_strength: 1 })),
    };
  }

  function download(url: string, ch: Channel<DownloadProgress>, from = 0) {
    const id = `dl-${++seq}`;
    const total = 270 * 1024 ** 2;
    const fileName = url.split('/').pop() ?? url;
    return new Promise((resolve, reject) => {
      let done = from;
      const tick = window.setInterval(() => {
        done = Math.min(total, done + 9 * 1024 ** 2);
        const rate = 30 * 1024 ** 2;
        ch.onmessage({ download_id: id, bytes_done: done, total, bytes_per_sec: rate, eta_secs: (total - done) / rate, resumed_from: 0, attempt: 0, done: done >= total });
        if (done >= total) {
          window.clearInterval(tick);
          downloads.delete(id);
          const i = partials.findIndex((p) => p.file_name === fileName);
          if (i >= 0) partials.splice(i, 1);
          resolve({ download_id: id, path: `/home/you/.local/share/conclave/models/${url.split('/').pop()}`, sha256: 'f'.repeat(64), size: total, sha256_source: 'unverified', resumed: false, model: null });
        }
      }, 300);
      ch.onmessage({ download_id: id, bytes_done: 0, total: null, bytes_per_sec: 0, eta_secs: null, resumed_from: 0, attempt: 0, done: false });
      downloads.set(id, () => {
        window.clearInterval(tick);
        downloads.delete(id);
        const kept = { file_name: fileName, url, bytes_done: done, total, has_sha256: false, in_progress: false, modified_secs: Math.floor(Date.now() / 1000) };
        const i = partials.findIndex((p) => p.file_name === fileName);
        if (i >= 0) partials[i] = kept;
        else partials.unshift(kept);
        reject({ code: 'download_cancelled', message: `download cancelled (partial file kept for resume: ${url.split('/').pop()}.part)` });
      });
    });
  }

  // The local API server as the shell reports it; 8081 plays "port in use", and any
  // address but loopback without a key is refused, as the core does.
  let apiSettings: ApiServerSettings = { enabled: false, host: '127.0.0.1', port: 8080, api_key: null, save_history: false };
  const apiStatus = (): ApiServerStatus => {
    const s = apiSettings;
    let error: ApiServerStatus['error'] = null;
    if (s.enabled && s.port === 8081) error = { code: 'api_bind_failed', message: `cannot listen on ${s.host}:${s.port}: Address already in use (os error 98)` };
    else if (s.enabled && !/^(127\.|localhost$|::1$)/.test(s.host) && !s.api_key)
      error = { code: 'api_key_required', message: `Refusing to listen on ${s.host}:${s.port} without an API key: anyone on the network could use your models. Set an API key, or bind 127.0.0.1.` };
    const running = s.enabled && !error;
    return { running, base_url: running ? `http://${s.host}:${s.port}/v1` : null, error, settings: { ...s } };
  };

  mockIPC(
    async (cmd, raw) => {
      const args = (raw ?? {}) as Record<string, unknown>;
      switch (cmd) {
        case 'app_info':
          return { version: '0.1.0-mock', data_dir: '/home/you/.local/share/conclave', models_dirs: ['/home/you/.local/share/conclave/models', '/home/you/.cache/lm-studio/models'] };
        case 'list_models':
          return catalog;
        case 'open_model_file':
          return fail('not_found', `No such file: ${String(args.path)}`);
        case 'load_model': {
          const m = catalog.find((x) => x.id === args.modelId);
          if (!m) return fail('not_found', 'unknown model');
          if (m.error) return fail('broken_model', m.error);
          const ch = args.onProgress as Channel<{ fraction: number }>;
          for (let i = 1; i <= 10; i++) {
            await new Promise((r) => setTimeout(r, 60));
            ch.onmessage({ fraction: i / 10 });
          }
          return { model_id: m.id, name: m.name, load_ms: 640, n_ctx: 4096, n_ctx_train: m.context_length ?? 4096, has_chat_template: true, template_name: 'chatml', reasoning_format: m.reasoning_format ?? 'none', thinking_off_available: true, thinking_off_reason: null };
        }
        case 'start_chat':
          return stream(args.request as ChatRequest, args.onEvent as Channel<ChatEvent>);
        case 'cancel': {
          const list = timers.get(String(args.requestId)) as (number[] & { finish?: (s: 'cancelled') => void }) | undefined;
          if (list) {
            list.forEach((t) => clearTimeout(t));
            list.finish?.('cancelled');
          }
          return null;
        }
        case 'list_conversations':
          if (scenario === 'error') return fail('db_locked', 'The history database is locked by another process.');
          return [...convs.values()].map(summary);
        case 'get_conversation': {
          const c = convs.get(String(args.id));
          return c ? structuredClone(c) : fail('not_found', 'No such conversation');
        }
        case 'set_current_leaf': {
          const c = convs.get(String(args.conversationId));
          if (c) c.current_leaf_id = String(args.messageId);
          return null;
        }
        case 'delete_message': {
          for (const c of convs.values()) {
            const gone = new Set([String(args.id)]);
            let grew = true;
            while (grew) {
              grew = false;
              for (const m of c.messages) if (m.parent_id && gone.has(m.parent_id) && !gone.has(m.id)) { gone.add(m.id); grew = true; }
            }
            c.messages = c.messages.filter((m) => !gone.has(m.id));
            if (c.current_leaf_id && gone.has(c.current_leaf_id)) c.current_leaf_id = null;
          }
          return null;
        }
        case 'delete_conversation':
          convs.delete(String(args.id));
          return null;
        case 'rename_conversation': {
          const c = convs.get(String(args.id));
          if (c) c.title = String(args.title);
          return null;
        }
        case 'search': {
          const q = String(args.query).toLowerCase();
          const hits = [];
          for (const c of convs.values()) {
            for (const m of c.messages) {
              const text = args.includeReasoning ? `${m.content} ${m.reasoning ?? ''}` : m.content;
              const i = text.toLowerCase().indexOf(q);
              if (i >= 0) {
                const start = Math.max(0, i - 30);
                hits.push({ conversation_id: c.id, message_id: m.id, title: c.title, role: m.role, snippet: `${start > 0 ? '…' : ''}${text.slice(start, i)}\u0001${text.slice(i, i + q.length)}\u0002${text.slice(i + q.length, i + q.length + 60)}…` });
              }
            }
          }
          return hits;
        }
        case 'export_conversation': {
          const c = convs.get(String(args.id));
          if (!c) return fail('not_found', 'No such conversation');
          return args.format === 'json' ? JSON.stringify(c, null, 2) : `# ${c.title}\n\n${c.messages.map((m) => `**${m.role}**: ${m.content}`).join('\n\n')}`;
        }
        case 'list_presets':
          return [...presets.values()].sort((a, b) => a.name.localeCompare(b.name));
        case 'save_preset': {
          const name = String(args.name).trim();
          const now = Date.now();
          presets.set(name, { name, settings: args.settings as ChatSettings, created_at: presets.get(name)?.created_at ?? now, updated_at: now });
          return presets.get(name);
        }
        case 'rename_preset': {
          const p = presets.get(String(args.from));
          if (!p) return fail('not_found', `preset '${String(args.from)}' not found in history`);
          if (presets.has(String(args.to))) return fail('invalid_input', `a preset named '${String(args.to)}' already exists`);
          presets.delete(p.name);
          presets.set(String(args.to), { ...p, name: String(args.to) });
          return null;
        }
        case 'delete_preset':
          if (!presets.delete(String(args.name))) return fail('not_found', `preset '${String(args.name)}' not found in history`);
          return null;
        case 'export_history_file':
          return { path: String(args.path), conversations: args.id ? 1 : convs.size, bytes: 1234 };
        case 'import_history_file':
          return { conversations: 0, messages: 0, skipped_existing: [...convs.keys()] };
        case 'start_compare':
          return compare(args.request as CompareRequest, args.onEvent as Channel<CompareOutput>);
        case 'cancel_compare': {
          const c = compares.get(String(args.runId));
          c?.cancel();
          return null;
        }
        case 'vote_compare': {
          const c = compares.get(String(args.runId));
          if (!c) return fail('not_found', 'No such compare run');
          return c.files.map((model, column) => ({ column, model, sha256: null, message_id: `${c.id}-m${column}` }));
        }
        case 'compare_diff':
          return { answer: wordDiff(String(args.answerA), String(args.answerB)), thinking: wordDiff(String(args.thinkingA), String(args.thinkingB)) };
        case 'leaderboard':
          return board(args.tag as string | null);
        case 'leaderboard_csv': {
          const b = board(args.tag as string | null);
          return `rank,model,model_id,votes,wins,losses,ties,both_bad,elo,bt_score,bt_ci_low,bt_ci_high\n${b.rows.map((r) => [r.rank, r.name, r.model_id, r.votes, r.wins, r.losses, r.ties, r.both_bad, r.elo.toFixed(1), r.bt_score.toFixed(1), r.bt_ci_low.toFixed(1), r.bt_ci_high.toFixed(1)].join(',')).join('\n')}\n`;
        }
        case 'model_details': {
          const m = catalog.find((x) => x.id === args.modelId);
          if (!m) return fail('model_not_found', 'unknown model');
          const nCtx = Number(args.nCtx) || (m.context_length ?? 4096);
          const kv = nCtx * 56 * 1024;
          const total = m.size_bytes * 1.05 + kv + 180 * 1024 ** 2;
          const avail = 6 * GB;
          const fit = m.error ? null : { n_ctx: nCtx, weights_bytes: m.size_bytes, kv_cache_bytes: kv, compute_bytes: 120 * 1024 ** 2, compute_reserved_bytes: 300 * 1024 ** 2, overhead_bytes: 60 * 1024 ** 2, total_bytes: total, available_bytes: avail, fit: total * 1.25 <= avail ? 'fits' : total <= avail ? 'tight' : 'wont_fit', notes: nCtx > 16384 ? ['sliding-window layers counted with a full-size cache'] : [] };
          const placement = m.error ? null : mockPlacement(m, kv, total, avail);
          return { model: m, file_name: m.path.split('/').pop(), folder: m.path.replace(/\/[^/]*$/, ''), parts: [m.path], sha256: m.error ? null : 'a3f1c09e'.repeat(8), tags: [], general_name: m.name, license: 'apache-2.0', layer_count: 28, embedding_length: 1024, head_count: 16, head_count_kv: 8, gguf_version: 3, split_count: 1, weights_bytes: m.size_bytes, fit, fit_error: m.error ? { code: 'model_not_gguf', message: m.error } : null, placement, placement_error: null };
        }
        case 'import_model':
          return fail('model_not_gguf', `${String(args.path)} is not a usable GGUF model: bad magic`);
        case 'download_model':
          return download(String(args.url), args.onProgress as Channel<DownloadProgress>);
        case 'cancel_download':
          downloads.get(String(args.downloadId))?.();
          return null;
        case 'partial_downloads':
          return partials.map((p) => ({ ...p }));
        case 'resume_download': {
          const p = partials.find((x) => x.file_name === args.fileName);
          if (!p?.url) return fail('model_not_found', `no model matches "${String(args.fileName)} (unfinished download)"`);
          return download(p.url, args.onProgress as Channel<DownloadProgress>, Math.min(p.bytes_done, 200 * 1024 ** 2));
        }
        case 'delete_partial_download': {
          const i = partials.findIndex((x) => x.file_name === args.fileName);
          if (i < 0) return fail('model_not_found', `no model matches "${String(args.fileName)} (unfinished download)"`);
          partials.splice(i, 1);
          return null;
        }
        case 'remove_model': {
          const i = catalog.findIndex((x) => x.id === args.modelId);
          if (i < 0) return fail('model_not_found', 'unknown model');
          return catalog.splice(i, 1)[0];
        }
        case 'set_model_gpu_layers': {
          const i = catalog.findIndex((x) => x.id === args.modelId);
          if (i < 0) return fail('model_not_found', 'unknown model');
          catalog[i] = { ...catalog[i], gpu_layers: (args.layers as number | null) ?? null };
          return null;
        }
        case 'rename_model': {
          const m = catalog.find((x) => x.id === args.modelId);
          if (!m) return fail('model_not_found', 'unknown model');
          m.name = (args.name as string | null)?.trim() || (m.path.split('/').pop() ?? m.name);
          return null;
        }
        case 'api_server_status':
          return apiStatus();
        case 'set_api_server': {
          const port = Number(args.port);
          if (!Number.isInteger(port) || port < 1 || port > 65535) return fail('invalid_input', 'the port must be between 1 and 65535');
          const host = String(args.host ?? '').trim();
          if (!host) return fail('invalid_input', 'the bind address must not be empty');
          const key = typeof args.apiKey === 'string' ? args.apiKey.trim() : '';
          apiSettings = { enabled: Boolean(args.enabled), host, port, api_key: key || null, save_history: Boolean(args.saveHistory) };
          await new Promise((r) => setTimeout(r, 150));
          return apiStatus();
        }
        default:
          return fail('unknown_command', `mock: ${cmd} is not mocked`);
      }
    },
    { shouldMockEvents: true },
  );
}
