// Slow "still working" indicators (the waiting dots, the thinking glyph). A CSS animation
// that never ends is painted at the display's frame rate, and where WebKit paints without a
// GPU (src-tauri/src/rendering.rs) each of those 60 frames a second is a repaint, an IPC
// message and a blit: measured with bench/app-stream.sh, the thinking glyph's pulse alone
// cost the page more than the streamed text, on the cores the model decodes on. A beat
// changes the indicator a few times a second instead, and not at all for reduced motion.

export const reducedMotion = (): boolean =>
  typeof matchMedia === 'function' && matchMedia('(prefers-reduced-motion: reduce)').matches;

/** A counter that steps every `ms` while `running()` is true (read `.step` in markup). */
export class Beat {
  step = $state(0);

  constructor(running: () => boolean, ms: number) {
    $effect(() => {
      if (!running() || reducedMotion()) return;
      const t = setInterval(() => this.step++, ms);
      return () => clearInterval(t);
    });
  }
}
