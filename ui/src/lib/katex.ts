// KaTeX and its stylesheet, loaded on demand by markdown.ts: about 10 MB of the web
// process at idle (bench/app-startup.sh) for windows that show no formula.
import 'katex/dist/katex.min.css';

export { default } from 'katex';
