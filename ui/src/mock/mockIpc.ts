// Dev-only fake backend (never in a default production build): `npm run dev` then open
// `/?mock`, or `npm run build:mock`. URL parameters: `mock=empty` (no models, no history),
// `mock=error` (history fails), `open=<conversation id>`, `drawer`, `send=<text>`.
import { mockIPC } from '@tauri-apps/api/mocks';
import type { Channel } from '@tauri-apps/api/core';
import type {
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
          return { model_id: m.id, name: m.name, load_ms: 640, n_ctx_train: m.context_length ?? 4096, has_chat_template: true, template_name: 'chatml', reasoning_format: m.reasoning_format ?? 'none' };
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
        default:
          return fail('unknown_command', `mock: ${cmd} is not mocked`);
      }
    },
    { shouldMockEvents: true },
  );
}
