//! Bounds on what an untrusted chat template may do while it renders.
//!
//! A GGUF's chat template is code written by whoever made the file. minijinja cannot run
//! code outside the template, but it can be told to loop or to build strings for ever:
//! fuel (one unit per VM instruction) bounds the loops, and nothing in minijinja bounds
//! memory. `'x' ~ 'x'` doubled forty times in a namespace asks for a terabyte within a few
//! hundred instructions, and an allocation failure aborts the whole process.
//!
//! So before a template runs we rewrite its compiled instructions (minijinja's
//! `unstable_machinery`): string concatenation, `+` and `*` call checked functions, every
//! value a filter, method or function returns is measured, and every piece of output is
//! counted, captured output included (`{% set x %}…{% endset %}` never reaches the writer).
//! The checks share one [`Budget`] per render: a size for any one value, a total of bytes
//! built, a total of bytes emitted, a count of items in a list, and a deadline.
//!
//! The rewrite depends on minijinja's instruction set, which is not a stable API: the
//! workspace pins minijinja to 2.24.x, and `guarded_instructions` must be checked against
//! the `Instruction` enum whenever that pin moves (any new jump must have its target mapped).

use std::fmt::{self, Write as _};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use minijinja::machinery::{ast, Instruction, Instructions};
use minijinja::value::Rest;
use minijinja::{Environment, Error as JinjaError, ErrorKind, State, Value};

/// Limits on one render.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RenderLimits {
    /// VM instructions (minijinja fuel). The largest real templates (tool calling, 200
    /// turns) use well under a million.
    pub fuel: u64,
    /// Wall-clock time for one render; a normal one takes milliseconds.
    pub time: Duration,
    /// Bytes of output, counting output captured by `{% set %}` blocks and filters.
    pub max_output: usize,
    /// Bytes of any one string the template builds.
    pub max_value: usize,
    /// Bytes of all the strings the template builds, added up (freed or not).
    pub max_built: usize,
    /// Items in any one list.
    pub max_items: usize,
    /// Bytes of template source.
    pub max_source: usize,
    /// Nested macro calls and recursive loops.
    pub max_recursion: usize,
}

impl Default for RenderLimits {
    fn default() -> Self {
        Self {
            fuel: 20_000_000,
            time: Duration::from_secs(3),
            // A million-token context is about 4 MB of text.
            max_output: 32 << 20,
            max_value: 32 << 20,
            max_built: 512 << 20,
            // The same bound as minijinja's own `range`.
            max_items: 100_000,
            max_source: 1 << 20,
            max_recursion: 64,
        }
    }
}

/// What every check of one render shares. Atomics because minijinja functions must be
/// `Send + Sync`, although one render runs on one thread.
pub(crate) struct Budget {
    limits: RenderLimits,
    deadline: Instant,
    built: AtomicUsize,
    emitted: AtomicUsize,
    /// Why a limit stopped the render, so the caller reports a limit and not a template bug.
    tripped: Mutex<Option<String>>,
}

impl Budget {
    pub(crate) fn new(limits: RenderLimits) -> Arc<Self> {
        Arc::new(Self {
            limits,
            deadline: Instant::now() + limits.time,
            built: AtomicUsize::new(0),
            emitted: AtomicUsize::new(0),
            tripped: Mutex::new(None),
        })
    }

    pub(crate) fn tripped(&self) -> Option<String> {
        self.tripped.lock().ok().and_then(|t| t.clone())
    }

    pub(crate) fn trip(&self, detail: String) -> JinjaError {
        if let Ok(mut t) = self.tripped.lock() {
            t.get_or_insert_with(|| detail.clone());
        }
        JinjaError::new(ErrorKind::InvalidOperation, detail)
    }

    pub(crate) fn check_time(&self) -> Result<(), JinjaError> {
        if Instant::now() > self.deadline {
            return Err(self.trip(format!(
                "it ran longer than {} ms",
                self.limits.time.as_millis()
            )));
        }
        Ok(())
    }

    fn check_value_size(&self, bytes: usize) -> Result<(), JinjaError> {
        if bytes > self.limits.max_value {
            return Err(self.trip(format!(
                "it built a string larger than {}",
                mib(self.limits.max_value)
            )));
        }
        Ok(())
    }

    fn check_items(&self, items: usize) -> Result<(), JinjaError> {
        if items > self.limits.max_items {
            return Err(self.trip(format!(
                "it built a list of more than {} items",
                self.limits.max_items
            )));
        }
        Ok(())
    }

    fn charge_built(&self, bytes: usize) -> Result<(), JinjaError> {
        self.check_value_size(bytes)?;
        let total = self.built.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if total > self.limits.max_built {
            return Err(self.trip(format!(
                "it built more than {} of strings",
                mib(self.limits.max_built)
            )));
        }
        Ok(())
    }

    pub(crate) fn charge_emitted(&self, bytes: usize) -> Result<(), JinjaError> {
        let total = self.emitted.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if total > self.limits.max_output {
            return Err(self.trip(format!(
                "its output grew past {}",
                mib(self.limits.max_output)
            )));
        }
        Ok(())
    }

    /// Renders `value` the way `{{ value }}` would, refusing to go past `max_value` bytes.
    fn display_capped(&self, parts: &[&Value]) -> Result<String, JinjaError> {
        let mut w = Capped {
            out: String::new(),
            cap: self.limits.max_value,
        };
        for v in parts {
            if write!(w, "{v}").is_err() {
                return Err(self.trip(format!(
                    "it built a string larger than {}",
                    mib(self.limits.max_value)
                )));
            }
        }
        Ok(w.out)
    }

    /// The bytes `{{ value }}` would write, without keeping them.
    fn display_len(&self, v: &Value) -> Result<usize, JinjaError> {
        if let Some(s) = v.as_str() {
            return Ok(s.len());
        }
        let mut w = Counter {
            n: 0,
            cap: self.limits.max_value,
        };
        if write!(w, "{v}").is_err() {
            return Err(self.trip(format!(
                "it built a string larger than {}",
                mib(self.limits.max_value)
            )));
        }
        Ok(w.n)
    }

    /// Charges a value some code returned: a string by its bytes, a list by its items.
    fn measure(&self, v: &Value) -> Result<(), JinjaError> {
        if let Some(s) = v.as_str() {
            return self.charge_built(s.len());
        }
        if is_sequence(v) {
            if let Some(n) = v.len() {
                self.check_items(n)?;
                return self.charge_built(n.saturating_mul(std::mem::size_of::<Value>()));
            }
        }
        Ok(())
    }
}

fn mib(bytes: usize) -> String {
    format!("{} MiB", bytes >> 20)
}

fn is_sequence(v: &Value) -> bool {
    matches!(
        v.kind(),
        minijinja::value::ValueKind::Seq | minijinja::value::ValueKind::Iterable
    )
}

/// A `fmt::Write` that fails instead of growing past `cap`.
struct Capped {
    out: String,
    cap: usize,
}

impl fmt::Write for Capped {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if self.out.len() + s.len() > self.cap {
            return Err(fmt::Error);
        }
        self.out.push_str(s);
        Ok(())
    }
}

struct Counter {
    n: usize,
    cap: usize,
}

impl fmt::Write for Counter {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.n += s.len();
        if self.n > self.cap {
            return Err(fmt::Error);
        }
        Ok(())
    }
}

// Names of the checked functions. A template cannot shadow them: a ':' cannot appear in a
// name the template declares, and the render context has no such keys.
const CONCAT: &str = "conclave:concat";
const ADD: &str = "conclave:add";
const MUL: &str = "conclave:mul";
const EMIT: &str = "conclave:emit";
const EMIT_RAW: &str = "conclave:emit-raw";
const MEASURE: &str = "conclave:measure";
const TICK: &str = "conclave:tick";

/// Filters whose arguments decide how large the result is: they are checked before they
/// run (a result measured afterwards could already have exhausted memory).
const SIZED_FILTERS: &[(&str, &str)] = &[
    ("replace", "conclave:replace"),
    ("join", "conclave:join"),
    ("format", "conclave:format"),
    ("indent", "conclave:indent"),
    ("tojson", "conclave:tojson"),
];

/// Registers the checked functions and filters on a fresh environment.
pub(crate) fn install(env: &mut Environment<'_>, budget: &Arc<Budget>) {
    let b = budget.clone();
    env.add_function(
        CONCAT,
        move |a: Value, c: Value| -> Result<Value, JinjaError> {
            b.check_time()?;
            concat(&b, &a, &c)
        },
    );
    let b = budget.clone();
    env.add_function(
        ADD,
        move |a: Value, c: Value| -> Result<Value, JinjaError> {
            b.check_time()?;
            if a.as_str().is_some() && c.as_str().is_some() {
                return concat(&b, &a, &c);
            }
            if is_sequence(&a) && is_sequence(&c) {
                b.check_items(seq_len(&b, &a)?.saturating_add(seq_len(&b, &c)?))?;
            }
            unguarded_op("a + b", a, c)
        },
    );
    let b = budget.clone();
    env.add_function(
        MUL,
        move |a: Value, c: Value| -> Result<Value, JinjaError> {
            b.check_time()?;
            for (x, n) in [(&a, &c), (&c, &a)] {
                let Some(n) = n.as_usize() else { continue };
                if let Some(s) = x.as_str() {
                    b.check_value_size(s.len().saturating_mul(n))?;
                    b.charge_built(s.len().saturating_mul(n))?;
                } else if is_sequence(x) {
                    b.check_items(seq_len(&b, x)?.saturating_mul(n))?;
                }
            }
            unguarded_op("a * b", a, c)
        },
    );
    let b = budget.clone();
    env.add_function(EMIT, move |v: Value| -> Result<Value, JinjaError> {
        b.check_time()?;
        b.charge_emitted(b.display_len(&v)?)?;
        Ok(v)
    });
    let b = budget.clone();
    env.add_function(EMIT_RAW, move |n: usize| -> Result<Value, JinjaError> {
        b.check_time()?;
        b.charge_emitted(n)?;
        Ok(Value::UNDEFINED)
    });
    let b = budget.clone();
    env.add_function(TICK, move || -> Result<Value, JinjaError> {
        b.check_time()?;
        Ok(Value::UNDEFINED)
    });
    let b = budget.clone();
    env.add_function(MEASURE, move |v: Value| -> Result<Value, JinjaError> {
        b.check_time()?;
        b.measure(&v)?;
        Ok(v)
    });
    for (name, guarded) in SIZED_FILTERS {
        let b = budget.clone();
        env.add_filter(
            *guarded,
            move |state: &State, args: Rest<Value>| -> Result<Value, JinjaError> {
                b.check_time()?;
                precheck(&b, name, &args)?;
                state.apply_filter(name, &args)
            },
        );
    }
}

/// Checks, before a filter or a Python string method runs, that its result stays within
/// the budget. `args[0]` is the value the filter applies to; a trailing keyword-argument
/// map may follow the positional ones.
pub(crate) fn precheck(b: &Budget, name: &str, args: &[Value]) -> Result<(), JinjaError> {
    let Some(subject) = args.first() else {
        return Ok(());
    };
    let positional = |i: usize| args.get(i).filter(|v| !v.is_kwargs());
    match name {
        "replace" => {
            let (Some(s), Some(old), Some(new)) = (
                subject.as_str(),
                positional(1).and_then(|v| v.as_str()),
                positional(2).and_then(|v| v.as_str()),
            ) else {
                return Ok(());
            };
            if new.len() > old.len() {
                // An empty pattern matches between every character (Python's rule).
                let mut matches = if old.is_empty() {
                    s.chars().count() + 1
                } else {
                    s.matches(old).count()
                };
                if let Some(count) = positional(3).and_then(|v| v.as_usize()) {
                    matches = matches.min(count);
                }
                let size = s
                    .len()
                    .saturating_add(matches.saturating_mul(new.len() - old.len()));
                b.check_value_size(size)?;
            }
        }
        "join" => {
            // Filter form: seq|join(sep). Method form: sep.join(seq).
            let (seq, sep) = match subject.as_str() {
                Some(sep) if positional(1).is_some_and(is_sequence) => {
                    (positional(1).cloned().unwrap_or_default(), sep.len())
                }
                _ => (
                    subject.clone(),
                    positional(1).and_then(|v| v.as_str()).map_or(0, str::len),
                ),
            };
            if !is_sequence(&seq) && seq.as_str().is_none() {
                return Ok(());
            }
            let mut total = 0usize;
            let mut items = 0usize;
            for item in seq.try_iter()? {
                items += 1;
                b.check_items(items)?;
                if items.is_multiple_of(1024) {
                    b.check_time()?;
                }
                total = total
                    .saturating_add(b.display_len(&item)?)
                    .saturating_add(sep);
                b.check_value_size(total)?;
            }
        }
        "format" => {
            // A width or precision in the format string ("%999999999s", "{:>999999999}")
            // is a size: refuse one larger than a value may be.
            if let Some(fmt) = subject.as_str() {
                let mut n: usize = 0;
                for c in fmt.chars() {
                    match c.to_digit(10) {
                        Some(d) => {
                            n = n.saturating_mul(10).saturating_add(d as usize);
                            b.check_value_size(n)?;
                        }
                        None => n = 0,
                    }
                }
            }
        }
        "indent" => {
            let width = match positional(1) {
                Some(w) => match w.as_str() {
                    Some(s) => s.len(),
                    None => w.as_usize().unwrap_or(0),
                },
                None => 4,
            };
            if let Some(s) = subject.as_str() {
                let lines = s.lines().count() + 1;
                b.check_value_size(s.len().saturating_add(lines.saturating_mul(width)))?;
            }
        }
        "tojson" => {
            // Indentation multiplies with nesting depth; nobody needs more than this.
            let indent = args
                .iter()
                .skip(1)
                .find_map(|v| {
                    if v.is_kwargs() {
                        v.get_attr("indent").ok().and_then(|i| i.as_usize())
                    } else {
                        v.as_usize()
                    }
                })
                .unwrap_or(0);
            if indent > 16 {
                return Err(b.trip(format!("tojson indent of {indent} is too large")));
            }
        }
        _ => {}
    }
    Ok(())
}

/// Items in a list, counted up to one past the limit when the list does not know its
/// length (a lazily repeated or chained one).
fn seq_len(b: &Budget, v: &Value) -> Result<usize, JinjaError> {
    if let Some(n) = v.len() {
        return Ok(n);
    }
    let mut n = 0usize;
    for _ in v.try_iter()?.take(b.limits.max_items + 1) {
        n += 1;
        if n.is_multiple_of(1024) {
            b.check_time()?;
        }
    }
    Ok(n)
}

fn concat(b: &Budget, a: &Value, c: &Value) -> Result<Value, JinjaError> {
    let s = b.display_capped(&[a, c])?;
    b.charge_built(s.len())?;
    Ok(Value::from(s))
}

/// An environment with no template code in it, for the cases of `+` and `*` that cannot
/// grow memory (numbers, short lists): it keeps minijinja's exact semantics for them.
static ARITHMETIC: LazyLock<Environment<'static>> = LazyLock::new(Environment::new);

fn unguarded_op(expr: &'static str, a: Value, b: Value) -> Result<Value, JinjaError> {
    ARITHMETIC
        .compile_expression(expr)?
        .eval(minijinja::context! { a => a, b => b })
}

/// The template's instructions with the checks woven in. Jump targets are remapped to
/// the start of the group that replaced the instruction they pointed at.
pub(crate) fn guarded_instructions<'s>(old: &Instructions<'s>) -> Instructions<'s> {
    let groups: Vec<Vec<Instruction<'s>>> = (0..old.len() as u32)
        .filter_map(|i| old.get(i))
        .map(expand)
        .collect();
    let mut start = Vec::with_capacity(groups.len() + 1);
    let mut next = 0u32;
    for g in &groups {
        start.push(next);
        next += g.len() as u32;
    }
    // A jump may point one past the end.
    start.push(next);
    let map = |target: u32| start.get(target as usize).copied().unwrap_or(next);

    let mut new = Instructions::new(old.name(), old.source());
    for (i, group) in groups.into_iter().enumerate() {
        let i = i as u32;
        let span = old.get_span(i);
        let line = old.get_line(i);
        for instr in group {
            let instr = match instr {
                Instruction::Jump(t) => Instruction::Jump(map(t)),
                Instruction::JumpIfFalse(t) => Instruction::JumpIfFalse(map(t)),
                Instruction::JumpIfFalseOrPop(t) => Instruction::JumpIfFalseOrPop(map(t)),
                Instruction::JumpIfTrueOrPop(t) => Instruction::JumpIfTrueOrPop(map(t)),
                Instruction::Iterate(t) => Instruction::Iterate(map(t)),
                Instruction::BuildMacro(name, t, flags) => {
                    Instruction::BuildMacro(name, map(t), flags)
                }
                other => other,
            };
            match (span, line) {
                (Some(span), _) => new.add_with_span(instr, span),
                (None, Some(line)) => new.add_with_line(instr, line.min(u16::MAX as usize) as u16),
                (None, None) => new.add(instr),
            };
        }
    }
    new
}

fn expand<'s>(instr: &Instruction<'s>) -> Vec<Instruction<'s>> {
    use Instruction as I;
    match instr {
        I::StringConcat => vec![I::CallFunction(CONCAT, Some(2))],
        I::Add => vec![I::CallFunction(ADD, Some(2))],
        I::Mul => vec![I::CallFunction(MUL, Some(2))],
        I::Emit => vec![I::CallFunction(EMIT, Some(1)), I::Emit],
        I::EmitRaw(s) => vec![
            I::LoadConst(Value::from(s.len())),
            I::CallFunction(EMIT_RAW, Some(1)),
            I::DiscardTop,
            I::EmitRaw(s),
        ],
        // Loops check the clock on every turn: an empty loop calls nothing else.
        I::Iterate(t) => vec![
            I::CallFunction(TICK, Some(0)),
            I::DiscardTop,
            I::Iterate(*t),
        ],
        I::ApplyFilter(name, n, id) => {
            let name = SIZED_FILTERS
                .iter()
                .find(|(f, _)| f == name)
                .map_or(*name, |(_, guarded)| *guarded);
            vec![
                I::ApplyFilter(name, *n, *id),
                I::CallFunction(MEASURE, Some(1)),
            ]
        }
        I::CallFunction(..) | I::CallMethod(..) | I::CallObject(..) => {
            vec![instr.clone(), I::CallFunction(MEASURE, Some(1))]
        }
        other => vec![other.clone()],
    }
}

/// minijinja folds constant expressions while it compiles (`'x' * 50000000 ~ 'x' * 50000000`
/// becomes one 100 MB constant), before any of the checks above can run. This estimates,
/// from the syntax tree, what each foldable expression would build, and refuses the template
/// when one would exceed the value limit or all of them the build limit.
pub(crate) struct FoldCheck {
    limits: RenderLimits,
    total: usize,
}

impl FoldCheck {
    pub(crate) fn run(stmt: &ast::Stmt<'_>, limits: RenderLimits) -> Result<(), String> {
        let mut check = Self { limits, total: 0 };
        check.stmt(stmt)
    }

    fn stmts(&mut self, stmts: &[ast::Stmt<'_>]) -> Result<(), String> {
        stmts.iter().try_for_each(|s| self.stmt(s))
    }

    fn exprs<'e, 'a: 'e>(
        &mut self,
        exprs: impl IntoIterator<Item = &'e ast::Expr<'a>>,
    ) -> Result<(), String> {
        exprs.into_iter().try_for_each(|e| self.expr(e))
    }

    fn args(&mut self, args: &[ast::CallArg<'_>]) -> Result<(), String> {
        args.iter().try_for_each(|a| match a {
            ast::CallArg::Pos(e)
            | ast::CallArg::Kwarg(_, e)
            | ast::CallArg::PosSplat(e)
            | ast::CallArg::KwargSplat(e) => self.expr(e),
        })
    }

    fn stmt(&mut self, stmt: &ast::Stmt<'_>) -> Result<(), String> {
        use ast::Stmt as S;
        match stmt {
            S::Template(t) => self.stmts(&t.children),
            S::EmitExpr(e) => self.expr(&e.expr),
            S::EmitRaw(_) | S::Continue(_) | S::Break(_) => Ok(()),
            S::ForLoop(f) => {
                self.exprs([&f.target, &f.iter])?;
                self.exprs(f.filter_expr.as_ref())?;
                self.stmts(&f.body)?;
                self.stmts(&f.else_body)
            }
            S::IfCond(i) => {
                self.expr(&i.expr)?;
                self.stmts(&i.true_body)?;
                self.stmts(&i.false_body)
            }
            S::WithBlock(w) => {
                for (a, b) in &w.assignments {
                    self.exprs([a, b])?;
                }
                self.stmts(&w.body)
            }
            S::Set(s) => self.exprs([&s.target, &s.expr]),
            S::SetBlock(s) => {
                self.expr(&s.target)?;
                self.exprs(s.filter.as_ref())?;
                self.stmts(&s.body)
            }
            S::AutoEscape(a) => {
                self.expr(&a.enabled)?;
                self.stmts(&a.body)
            }
            S::FilterBlock(f) => {
                self.expr(&f.filter)?;
                self.stmts(&f.body)
            }
            S::Block(b) => self.stmts(&b.body),
            S::Import(i) => self.exprs([&i.expr, &i.name]),
            S::FromImport(f) => {
                self.expr(&f.expr)?;
                for (a, b) in &f.names {
                    self.expr(a)?;
                    self.exprs(b.as_ref())?;
                }
                Ok(())
            }
            S::Extends(e) => self.expr(&e.name),
            S::Include(i) => self.expr(&i.name),
            S::Macro(m) => self.macro_(m),
            S::CallBlock(c) => {
                self.expr(&c.call.expr)?;
                self.args(&c.call.args)?;
                self.macro_(&c.macro_decl)
            }
            S::Do(d) => {
                self.expr(&d.call.expr)?;
                self.args(&d.call.args)
            }
        }
    }

    fn macro_(&mut self, m: &ast::Macro<'_>) -> Result<(), String> {
        self.exprs(&m.args)?;
        self.exprs(&m.defaults)?;
        self.stmts(&m.body)
    }

    fn expr(&mut self, expr: &ast::Expr<'_>) -> Result<(), String> {
        use ast::Expr as E;
        if let Some(size) = folded_size(expr) {
            if size > self.limits.max_value {
                return Err(format!(
                    "a constant expression in it would build {size} bytes (the limit is {})",
                    mib(self.limits.max_value)
                ));
            }
            self.total = self.total.saturating_add(size);
            if self.total > self.limits.max_built {
                return Err(format!(
                    "its constant expressions would build more than {}",
                    mib(self.limits.max_built)
                ));
            }
            // Folded as one: its parts are counted in `size`.
            return Ok(());
        }
        match expr {
            E::Var(_) | E::Const(_) => Ok(()),
            E::Slice(s) => {
                self.expr(&s.expr)?;
                self.exprs(s.start.iter().chain(&s.stop).chain(&s.step))
            }
            E::UnaryOp(u) => self.expr(&u.expr),
            E::BinOp(b) => self.exprs([&b.left, &b.right]),
            E::Compare(c) => {
                self.expr(&c.expr)?;
                self.exprs(c.ops.iter().map(|o| &o.expr))
            }
            E::IfExpr(i) => {
                self.exprs([&i.test_expr, &i.true_expr])?;
                self.exprs(i.false_expr.as_ref())
            }
            E::Filter(f) => {
                self.exprs(f.expr.as_ref())?;
                self.args(&f.args)
            }
            E::Test(t) => {
                self.expr(&t.expr)?;
                self.args(&t.args)
            }
            E::GetAttr(g) => self.expr(&g.expr),
            E::GetItem(g) => self.exprs([&g.expr, &g.subscript_expr]),
            E::Call(c) => {
                self.expr(&c.expr)?;
                self.args(&c.args)
            }
            E::List(l) => self.exprs(&l.items),
            E::Map(m) => {
                self.exprs(&m.keys)?;
                self.exprs(&m.values)
            }
        }
    }
}

/// What a constant-foldable expression would build, in bytes (strings) or items (lists);
/// `None` when it is not folded (it reads a variable or calls something).
fn folded_size(expr: &ast::Expr<'_>) -> Option<usize> {
    use ast::{BinOpKind as K, Expr as E};
    match expr {
        E::Const(c) => Some(const_size(&c.value)),
        E::List(l) => l
            .items
            .iter()
            .try_fold(0usize, |n, e| Some(n.saturating_add(folded_size(e)?))),
        E::Map(m) => m
            .keys
            .iter()
            .chain(&m.values)
            .try_fold(0usize, |n, e| Some(n.saturating_add(folded_size(e)?))),
        E::UnaryOp(u) => folded_size(&u.expr).map(|_| 8),
        E::Compare(c) => {
            folded_size(&c.expr)?;
            for o in &c.ops {
                folded_size(&o.expr)?;
            }
            Some(1)
        }
        E::BinOp(b) => {
            let (l, r) = (folded_size(&b.left)?, folded_size(&b.right)?);
            match b.op {
                K::Mul => {
                    // String or list repetition: the size of one side times the other.
                    let n = small_number(&b.right)
                        .map(|n| l.saturating_mul(n))
                        .max(small_number(&b.left).map(|n| r.saturating_mul(n)));
                    Some(n.unwrap_or(8).max(8))
                }
                K::Add | K::Concat => Some(l.saturating_add(r)),
                _ => Some(8),
            }
        }
        _ => None,
    }
}

fn const_size(v: &Value) -> usize {
    match v.as_str() {
        Some(s) => s.len(),
        None if is_sequence(v) => v.len().unwrap_or(0),
        None => 8,
    }
}

/// The integer a small constant expression folds to (`3`, `10 ** 8`). Only called on
/// expressions that `folded_size` found small, so folding it here costs nothing.
fn small_number(e: &ast::Expr<'_>) -> Option<usize> {
    if folded_size(e)? > 64 {
        return None;
    }
    let v = e.as_const()?;
    if v.as_str().is_some() || is_sequence(&v) {
        return None;
    }
    // Negative or fractional counts repeat nothing; huge ones must still count as huge.
    v.as_usize().or_else(|| {
        f64::try_from(v)
            .ok()
            .filter(|f| *f >= 1.0)
            .map(|f| f.min(usize::MAX as f64) as usize)
    })
}
