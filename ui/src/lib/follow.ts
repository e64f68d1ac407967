// Following a streaming answer. Scrolling moves everything on screen, and where WebKit paints
// without a GPU (the app's choice on such machines, src-tauri/src/rendering.rs) every
// scrolled frame repaints and ships the whole view: scrolling by a line on each token made
// the page's cost per token several times that of the text itself. So the view scrolls only
// when the text reaches its bottom edge, and then by enough to leave a third of the view
// free below the text: the next few dozen lines are painted where they appear, nothing else.

/** The scrollTop to jump to, or null while the end of the text is still in view. */
export function followTarget(scrollTop: number, viewHeight: number, contentEnd: number, margin = 24): number | null {
  if (contentEnd <= scrollTop + viewHeight - margin) return null;
  return Math.max(0, Math.round(contentEnd - viewHeight + viewHeight / 3));
}
