// The Replay panel against a mocked shell (identical, a word diff, an error) and the cost
// line's note about messages left out of a full context.
import { afterEach, describe, expect, it } from 'vitest';
import { flushSync, mount, tick, unmount } from 'svelte';
import { mockIPC } from '@tauri-apps/api/mocks';
import type { Metrics, ReplayReport } from '../lib/types';
import ReplayPanel from '../components/ReplayPanel.svelte';
import CostLine from '../components/CostLine.svelte';
import { normalizeSettings } from '../lib/settings';

let view: Record<string, unknown> | null = null;
afterEach(() => {
  if (view) unmount(view);
  view = null;
  document.body.innerHTML = '';
});

async function settle() {
  for (let i = 0; i < 5; i++) {
    await new Promise((r) => setTimeout(r, 5));
    await tick();
    flushSync();
  }
}
const q = (id: string) => document.querySelector(`[data-testid="${id}"]`) as HTMLElement | null;

function report(over: Partial<ReplayReport>): ReplayReport {
  return {
    message_id: 'm1',
    model_path: '/m/SmolLM2.gguf',
    sha256: 'b179c9523d0e00112233',
    template: 'model',
    seed: 77,
    identical: true,
    original: 'The sea is calm.',
    replayed: 'The sea is calm.',
    diff: [],
    original_reasoning: '',
    replayed_reasoning: '',
    reasoning_diff: [],
    ...over,
  };
}

describe('ReplayPanel', () => {
  it('says identical, with the seed it used', async () => {
    const asked: unknown[] = [];
    mockIPC((cmd, args) => {
      if (cmd === 'replay_answer') {
        asked.push((args as Record<string, unknown>).messageId);
        return report({});
      }
    });
    view = mount(ReplayPanel, { target: document.body, props: { messageId: 'm1', onclose: () => {} } });
    await settle();
    expect(asked).toEqual(['m1']);
    expect(q('replay-result')?.dataset.identical).toBe('true');
    expect(q('replay-result')?.textContent).toContain('identical ✓');
    expect(q('replay')?.textContent).toContain('seed 77');
  });

  it('shows deletions and insertions as text, never markup', async () => {
    mockIPC((cmd) => {
      if (cmd === 'replay_answer')
        return report({
          identical: false,
          original: '<b>Zebras</b> sea',
          replayed: 'The sea',
          diff: [
            { op: 'delete', text: '<b>Zebras</b>' },
            { op: 'insert', text: 'The' },
            { op: 'equal', text: ' sea' },
          ],
        });
    });
    view = mount(ReplayPanel, { target: document.body, props: { messageId: 'm1', onclose: () => {} } });
    await settle();
    expect(q('replay-result')?.dataset.identical).toBe('false');
    const spans = [...document.querySelectorAll('[data-testid="replay-diff"] span')].map((s) => [s.className.split(' ')[0], s.textContent]);
    expect(spans).toEqual([
      ['delete', '<b>Zebras</b>'],
      ['insert', 'The'],
      ['equal', ' sea'],
    ]);
    expect(document.querySelector('[data-testid="replay-diff"] b')).toBeNull();
  });

  it('shows why a replay is refused', async () => {
    mockIPC((cmd) => {
      if (cmd === 'replay_answer') throw { code: 'invalid_input', message: 'no model file with sha256 abc was found' };
    });
    view = mount(ReplayPanel, { target: document.body, props: { messageId: 'm1', onclose: () => {} } });
    await settle();
    expect(q('replay-error')?.textContent).toContain('sha256 abc');
  });
});

describe('context overflow', () => {
  const metrics = (over: Partial<Metrics>) =>
    ({
      ttft_ms: 100, prompt_eval_ms: 50, prompt_tps: 100, gen_ms: 100, gen_tps: 10, wall_ms: 200,
      thinking_ms: 0, answer_ms: 200, threads: 2, peak_rss_bytes: 1, cpu_seconds: 1, energy_wh: 0,
      energy_thinking_wh: 0, energy_answer_wh: 0, energy_method: 'cpu-time', dropped_messages: 0,
      seed: 1, template: 'chatml', reasoning_format: 'none', thinking: 'off', budget_cut_at: null,
      reasoning_cut_off: false, thoughts_dropped_tokens: 0, first_reasoning_ms: null, first_answer_ms: null,
      ...over,
    }) as Metrics;

  it('the cost line says which messages were dropped', async () => {
    view = mount(CostLine, {
      target: document.body,
      props: { metrics: metrics({ dropped_messages: 3, context_overflow: 'drop_oldest' }), usage: null, stopReason: 'eos' },
    });
    await settle();
    expect(q('context-dropped')?.textContent).toBe('context full: dropped 3 oldest messages');
    unmount(view);
    view = mount(CostLine, {
      target: document.body,
      props: { metrics: metrics({ dropped_messages: 2, context_overflow: 'truncate_middle' }), usage: null, stopReason: 'eos' },
    });
    await settle();
    expect(q('context-dropped')?.textContent).toBe('context full: dropped 2 middle messages');
  });

  it('nothing is said when nothing was dropped', async () => {
    view = mount(CostLine, { target: document.body, props: { metrics: metrics({}), usage: null, stopReason: 'eos' } });
    await settle();
    expect(q('context-dropped')).toBeNull();
  });

  it('stored settings keep a known policy and default an unknown one', () => {
    expect(normalizeSettings({ context_overflow: 'stop' }).context_overflow).toBe('stop');
    expect(normalizeSettings({ context_overflow: 'truncate_middle' }).context_overflow).toBe('truncate_middle');
    expect(normalizeSettings({ context_overflow: 'bogus' }).context_overflow).toBe('drop_oldest');
    expect(normalizeSettings(null).context_overflow).toBe('drop_oldest');
  });
});
