//! `pyrometer top`: a live, full-screen view of a running program.
//!
//! A sampler thread drives the same [`Session`] and [`Clock`] as `record`
//! and sends each tick's samples over a bounded channel; this thread feeds
//! them into a [`LiveProfile`] (the same `Profile` model), polls keys with
//! a short timeout and redraws about once a second. Rendering never delays
//! a tick. The terminal is restored on quit, on Ctrl-C or SIGTERM, and on a
//! panic (a panic hook).

use std::collections::{BTreeMap, HashMap};
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use crossterm::terminal;
use pyrometer_outputs::top::{
    fit_columns, table, terminal_text, LiveProfile, ProcessStatus, SortKey, Table, View, ViewInput,
};
use pyrometer_profile::Profile;
use pyrometer_sampler::{Clock, MemoryReading, Sample, Session};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Clear, Paragraph, Row, Wrap};
use ratatui::Frame;

use crate::args::{Mode, TopArgs};
use crate::attach::{attach_pid, launch_with, Launched};
use crate::record::{own_cpu_time, stop_child};
use crate::tick::{Ended, TickSink, Ticker};

/// Set by SIGINT / SIGTERM from outside (in raw mode Ctrl-C is a key).
static SIGNALLED: AtomicBool = AtomicBool::new(false);

/// Ticks the channel holds before the sampler waits for the view.
const CHANNEL_TICKS: usize = 1024;
/// Exited processes remembered for the processes view (workers recycled
/// by gunicorn's `max_requests` come and go for as long as it runs).
const MAX_EXITED_PROCESSES: usize = 256;
/// Longest wait for a key, so new samples are taken in promptly.
const KEY_POLL: Duration = Duration::from_millis(50);

/// One tick of the sampler thread.
struct Batch {
    samples: Vec<Sample>,
    /// Processes attached on this tick: PID, command line, Python version.
    attached: Vec<(i32, String, String)>,
    /// Processes that exited (or exec'd) on this tick.
    exited: Vec<i32>,
    processes: Vec<ProcessStatus>,
    errors: u64,
    torn_threads: u64,
}

enum Msg {
    Tick(Batch),
    Ended(String),
}

pub fn run(args: TopArgs) -> Result<()> {
    // --rate, --refresh and the --pid/command choice are checked by clap
    // (exit code 2).
    if !std::io::stdout().is_terminal() {
        bail!("top needs a terminal on standard output; to save a profile instead, use `pyrometer record`");
    }
    let (mut session, launched) = match args.pid {
        Some(pid) => (Session::new(attach_pid(pid)?, args.subprocesses), None),
        None => {
            let (root, l) = launch_with(&args.command, args.subprocesses, true)?;
            let session = match root {
                Some(t) => Session::new(t, args.subprocesses),
                None => Session::children_of(l.child.id() as i32),
            };
            (session, Some(l))
        }
    };
    session.set_idle_stacks(args.idle);
    ctrlc::set_handler(|| SIGNALLED.store(true, Ordering::SeqCst))
        .context("cannot install the Ctrl-C handler")?;
    watch_for_hangup();

    let root_pid = session.root_pid();
    let mut template = Profile::new();
    template.meta.target = if args.command.is_empty() {
        let cmd = session
            .targets()
            .first()
            .map(|t| t.cmdline().to_string())
            .unwrap_or_default();
        format!("pid {root_pid}: {cmd}")
    } else {
        args.command.join(" ")
    };
    template.meta.python_version = session
        .targets()
        .first()
        .map(|t| t.interpreter().version.to_string())
        .unwrap_or_default();
    template.meta.rate = f64::from(args.rate);
    for t in session.targets() {
        template.set_process(t.pid(), t.cmdline());
        if args.subprocesses {
            let role = if t.pid() == root_pid {
                "master"
            } else {
                "worker"
            };
            template.set_process_role(t.pid(), role);
        }
    }

    let start = Instant::now();
    let period = Duration::from_secs_f64(1.0 / f64::from(args.rate));
    let live = LiveProfile::new(template, period, Duration::ZERO);
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::sync_channel(CHANNEL_TICKS);
    let sampler = {
        let stop = stop.clone();
        let how = (f64::from(args.rate), args.mode, args.subprocesses);
        std::thread::Builder::new()
            .name("pyrometer-sampler".into())
            .spawn(move || sample_thread(session, launched, how, start, stop, tx))
            .context("cannot start the sampling thread")?
    };

    let result = {
        let _terminal = TerminalGuard::enter()?;
        let mut ui = Ui::new(live, &args, start);
        ui.event_loop(&rx)
    };
    stop.store(true, Ordering::SeqCst);
    // Drain so a sampler blocked on a full channel sees the stop flag.
    while rx.try_recv().is_ok() {}
    drop(rx);
    let _ = sampler.join();
    result
}

fn sample_thread(
    mut session: Session,
    mut launched: Option<Launched>,
    (rate, mode, subprocesses): (f64, Mode, bool),
    start: Instant,
    stop: Arc<AtomicBool>,
    tx: SyncSender<Msg>,
) {
    let mut clock = Clock::new(rate);
    let mut ticker = Ticker::new(mode, subprocesses);
    let mut sink = TopSink::default();
    let should_stop = || stop.load(Ordering::SeqCst) || SIGNALLED.load(Ordering::SeqCst);
    let ended = loop {
        let Some(tick) = clock.wait(None, should_stop) else {
            break None;
        };
        let time = tick.due.saturating_duration_since(start);
        let ended = ticker.tick(&mut session, &mut launched, time, &mut sink);
        let batch = sink.batch(&session);
        if tx.send(Msg::Tick(batch)).is_err() {
            break None;
        }
        match ended {
            Some(Ended::LaunchedExited(status)) => break Some(format!("target exited ({status})")),
            Some(why) => break Some(format!("{} (pid {})", why.describe(), session.root_pid())),
            None => {}
        }
    };
    if let Some(l) = launched.as_mut() {
        stop_child(l);
    }
    if let Some(why) = ended {
        let _ = tx.send(Msg::Ended(why));
    }
}

/// What the sampler thread collects for the view between two sends.
#[derive(Debug, Default)]
struct TopSink {
    samples: Vec<Sample>,
    attached: Vec<(i32, String, String)>,
    exited: Vec<i32>,
    /// RSS per process at its last memory reading (every 100 ms).
    last_rss: HashMap<i32, u64>,
}

impl TickSink for TopSink {
    fn attached(&mut self, pid: i32, cmdline: &str, python_version: &str) {
        self.attached
            .push((pid, cmdline.to_string(), python_version.to_string()));
    }
    fn exited(&mut self, pid: i32) {
        self.exited.push(pid);
        self.last_rss.remove(&pid);
    }
    fn sample(&mut self, sample: Sample) {
        self.samples.push(sample);
    }
    fn memory(&mut self, r: &MemoryReading) {
        match r.rss {
            Some(b) => self.last_rss.insert(r.pid, b),
            None => self.last_rss.remove(&r.pid),
        };
    }
}

impl TopSink {
    /// This tick's batch for the view; the sink is empty again after.
    fn batch(&mut self, session: &Session) -> Batch {
        self.last_rss
            .retain(|pid, _| session.targets().iter().any(|t| t.pid() == *pid));
        let processes = session
            .targets()
            .iter()
            .map(|t| ProcessStatus {
                pid: t.pid(),
                errors: t.stats.torn.saturating_add(t.stats.torn_threads),
                alive: true,
                rss: self.last_rss.get(&t.pid()).copied(),
            })
            .collect();
        Batch {
            samples: std::mem::take(&mut self.samples),
            attached: std::mem::take(&mut self.attached),
            exited: std::mem::take(&mut self.exited),
            processes,
            errors: session.stats.errors,
            torn_threads: session.stats.torn_threads,
        }
    }
}

/// Debug builds only: `PYROMETER_TEST_PANIC_IN_TOP=1` panics after the
/// first frame, so the tests can check that the panic hook restores the
/// terminal.
fn panic_for_tests() {
    #[cfg(debug_assertions)]
    if std::env::var_os("PYROMETER_TEST_PANIC_IN_TOP").is_some_and(|v| v == "1") {
        panic!("PYROMETER_TEST_PANIC_IN_TOP is set: panicking as the tests asked");
    }
}

/// Raw mode and the alternate screen while alive; restored on drop and by
/// the panic hook.
struct TerminalGuard;

fn restore_terminal() {
    let _ = terminal::disable_raw_mode();
    let mut out = std::io::stdout();
    let _ = crossterm::execute!(out, terminal::LeaveAlternateScreen, crossterm::cursor::Show);
    let _ = out.flush();
}

impl TerminalGuard {
    fn enter() -> Result<TerminalGuard> {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore_terminal();
            previous(info);
        }));
        terminal::enable_raw_mode().context("cannot put the terminal in raw mode")?;
        let guard = TerminalGuard;
        crossterm::execute!(
            std::io::stdout(),
            terminal::EnterAlternateScreen,
            crossterm::cursor::Hide
        )
        .context("cannot switch to the alternate screen")?;
        Ok(guard)
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore_terminal();
    }
}

/// The status line's numbers, computed at each refresh.
#[derive(Debug, Default, Clone)]
struct Status {
    rate: f64,
    errors: u64,
    torn_threads: u64,
    own_cpu: f64,
    processes: usize,
    exited: u64,
    samples: u64,
}

/// What the screen shows, and the state the keys change.
struct Ui {
    live: LiveProfile,
    start: Instant,
    refresh: Duration,
    include_idle: bool,
    requested_rate: u32,
    view: View,
    sort: BTreeMap<&'static str, (usize, bool)>,
    filter: String,
    editing_filter: bool,
    paused: bool,
    cumulative: bool,
    help: bool,
    ended: Option<String>,
    processes: BTreeMap<i32, ProcessStatus>,
    errors: u64,
    torn_threads: u64,
    /// Processes that exited (or exec'd) while watched.
    exited_processes: u64,
    /// The current view's rows as last computed (unsorted, unfiltered).
    rows: Table,
    status: Status,
    last_refresh: Instant,
    cpu_at_refresh: Duration,
}

impl Ui {
    fn new(live: LiveProfile, args: &TopArgs, start: Instant) -> Ui {
        let mut ui = Ui {
            live,
            start,
            refresh: Duration::from_secs_f64(args.refresh),
            include_idle: args.idle,
            requested_rate: args.rate,
            view: View::Functions,
            sort: BTreeMap::new(),
            filter: String::new(),
            editing_filter: false,
            paused: false,
            cumulative: false,
            help: false,
            ended: None,
            processes: BTreeMap::new(),
            errors: 0,
            torn_threads: 0,
            exited_processes: 0,
            rows: Table {
                columns: View::Functions.columns(),
                rows: Vec::new(),
            },
            status: Status::default(),
            last_refresh: Instant::now(),
            cpu_at_refresh: own_cpu_time(),
        };
        ui.recompute();
        ui
    }

    fn now(&self) -> Duration {
        self.start.elapsed()
    }

    fn event_loop(&mut self, rx: &Receiver<Msg>) -> Result<()> {
        let backend = ratatui::backend::CrosstermBackend::new(std::io::stdout());
        let mut term = ratatui::Terminal::new(backend).context("cannot draw on the terminal")?;
        let mut dirty = true;
        loop {
            if SIGNALLED.load(Ordering::SeqCst) {
                return Ok(());
            }
            dirty |= self.drain(rx);
            if self.ended.is_none() && self.last_refresh.elapsed() >= self.refresh {
                self.refresh();
                dirty = true;
            }
            if dirty {
                term.draw(|f| self.draw(f))
                    .context("cannot draw on the terminal")?;
                dirty = false;
                panic_for_tests();
            }
            if terminal_gone() {
                // The terminal hung up (its window or tmux server went
                // away): nobody can quit with a key any more.
                return Ok(());
            }
            if event::poll(KEY_POLL).context("cannot read the keyboard")? {
                match event::read().context("cannot read the keyboard")? {
                    Event::Key(k) if k.kind != KeyEventKind::Release => {
                        if !self.key(k) {
                            return Ok(());
                        }
                        dirty = true;
                    }
                    Event::Resize(..) => dirty = true,
                    _ => {}
                }
            }
        }
    }

    /// Take in what the sampler sent; true if the screen must change.
    fn drain(&mut self, rx: &Receiver<Msg>) -> bool {
        let mut changed = false;
        loop {
            let msg = match rx.recv_timeout(Duration::ZERO) {
                Ok(m) => m,
                Err(RecvTimeoutError::Timeout) => return changed,
                Err(RecvTimeoutError::Disconnected) => {
                    if self.ended.is_none() {
                        self.end("sampling stopped".into());
                        changed = true;
                    }
                    return changed;
                }
            };
            match msg {
                Msg::Tick(b) => self.take(b),
                Msg::Ended(why) => {
                    self.end(why);
                    changed = true;
                }
            }
        }
    }

    fn take(&mut self, b: Batch) {
        for (pid, cmd, version) in &b.attached {
            self.live.set_process(*pid, cmd, Some("worker"));
            if self.live.cumulative().meta.python_version.is_empty() {
                self.live.set_python_version(version);
            }
        }
        for st in self.processes.values_mut() {
            st.alive = false;
        }
        for st in b.processes {
            self.processes.insert(st.pid, st);
        }
        let exited = self.processes.values().filter(|p| !p.alive).count();
        if exited > MAX_EXITED_PROCESSES {
            // Forget the lowest PIDs first: usually the oldest.
            let mut drop = exited - MAX_EXITED_PROCESSES;
            self.processes.retain(|_, p| {
                if !p.alive && drop > 0 {
                    drop -= 1;
                    return false;
                }
                true
            });
        }
        self.errors = b.errors;
        self.torn_threads = b.torn_threads;
        self.live.add_tick();
        // The sampler kept only what --mode keeps (crate::tick, as record).
        for s in &b.samples {
            self.live.add_sample(s);
        }
        for pid in &b.exited {
            self.live.process_exited(*pid);
            self.exited_processes += 1;
        }
    }

    fn end(&mut self, why: String) {
        // Show the samples of the interval cut short by the exit, if it has
        // any (else the last full interval stays), then freeze.
        if self.live.current_samples() > 0 {
            self.refresh();
        }
        for st in self.processes.values_mut() {
            st.alive = false;
        }
        self.status.exited = self.exited_processes;
        self.recompute();
        self.ended = Some(why);
    }

    /// Close the interval and recompute what is shown (unless paused).
    fn refresh(&mut self) {
        let now = self.now();
        let wall = self.last_refresh.elapsed().as_secs_f64();
        let cpu = own_cpu_time();
        self.live.roll(now);
        let (_, _, _, per_sample) = self.live.window(false, now);
        self.status = Status {
            rate: if per_sample > 0.0 {
                1.0 / per_sample
            } else {
                0.0
            },
            errors: self.errors,
            torn_threads: self.torn_threads,
            own_cpu: if wall > 0.0 {
                100.0 * cpu.saturating_sub(self.cpu_at_refresh).as_secs_f64() / wall
            } else {
                0.0
            },
            processes: self.processes.values().filter(|p| p.alive).count(),
            exited: self.exited_processes,
            samples: self.live.cumulative().total_samples(),
        };
        self.cpu_at_refresh = cpu;
        self.last_refresh = Instant::now();
        if !self.paused {
            self.recompute();
        }
    }

    fn recompute(&mut self) {
        let now = self.now();
        let statuses: Vec<ProcessStatus> = self.processes.values().cloned().collect();
        let (profile, requests, span, sample_seconds) = self.live.window(self.cumulative, now);
        let input = ViewInput {
            profile,
            requests,
            latency: self.live.cumulative(),
            span,
            sample_seconds,
            include_idle: self.include_idle,
            processes: &statuses,
        };
        self.rows = table(self.view, &input);
    }

    fn sort_of(&self, view: View) -> (usize, bool) {
        self.sort
            .get(view.title())
            .copied()
            .unwrap_or((view.default_sort(), false))
    }

    fn set_sort(&mut self, column: usize, reverse: bool) {
        let n = self.view.columns().len();
        self.sort.insert(
            self.view.title(),
            (column.min(n.saturating_sub(1)), reverse),
        );
    }

    fn switch(&mut self, view: View) {
        self.view = view;
        self.recompute();
    }

    /// Handle a key; false means quit.
    fn key(&mut self, k: KeyEvent) -> bool {
        if k.modifiers.contains(KeyModifiers::CONTROL) && k.code == KeyCode::Char('c') {
            return false;
        }
        // Esc quickly followed by a key arrives as Alt-key: take it as both.
        if k.modifiers.contains(KeyModifiers::ALT) {
            let plain = KeyEvent::new(k.code, k.modifiers - KeyModifiers::ALT);
            return self.key(KeyEvent::new(KeyCode::Esc, KeyModifiers::NONE)) && self.key(plain);
        }
        if self.editing_filter {
            match k.code {
                KeyCode::Enter => self.editing_filter = false,
                KeyCode::Esc => {
                    self.filter.clear();
                    self.editing_filter = false;
                }
                KeyCode::Backspace => {
                    self.filter.pop();
                }
                KeyCode::Char(c) if !c.is_control() && self.filter.chars().count() < 64 => {
                    self.filter.push(c)
                }
                _ => {}
            }
            return true;
        }
        if self.help {
            // Any key closes the help; q still quits.
            self.help = false;
            return k.code != KeyCode::Char('q');
        }
        let (column, reverse) = self.sort_of(self.view);
        let columns = self.view.columns().len();
        match k.code {
            KeyCode::Char('q') => return false,
            KeyCode::Tab => self.switch(self.view.next()),
            KeyCode::BackTab => {
                let mut v = self.view;
                for _ in 0..View::ALL.len() - 1 {
                    v = v.next();
                }
                self.switch(v)
            }
            KeyCode::Char('f') => self.switch(View::Functions),
            KeyCode::Char('l') => self.switch(View::Lines),
            KeyCode::Char('e') => self.switch(View::Endpoints),
            KeyCode::Char('p') => self.switch(View::Processes),
            KeyCode::Char(d @ '1'..='9') => {
                let i = (d as usize) - ('1' as usize);
                if i < columns {
                    self.set_sort(i, false);
                }
            }
            KeyCode::Left => self.set_sort(column.saturating_sub(1), reverse),
            KeyCode::Right => self.set_sort((column + 1).min(columns - 1), reverse),
            KeyCode::Char('r') => self.set_sort(column, !reverse),
            KeyCode::Char('/') => self.editing_filter = true,
            KeyCode::Esc => self.filter.clear(),
            KeyCode::Char(' ') => {
                self.paused = !self.paused;
                if !self.paused {
                    self.recompute();
                }
            }
            KeyCode::Char('0') | KeyCode::Char('R') => {
                let now = self.now();
                self.live.reset(now);
                self.recompute();
            }
            KeyCode::Char('c') => {
                self.cumulative = !self.cumulative;
                self.recompute();
            }
            KeyCode::Char('?') | KeyCode::Char('h') => self.help = true,
            _ => {}
        }
        true
    }

    fn draw(&self, f: &mut Frame) {
        let area = f.area();
        let [top, status, notice, body, keys] = Layout::vertical([
            Constraint::Length(1),
            Constraint::Length(1),
            Constraint::Length(1),
            Constraint::Min(0),
            Constraint::Length(1),
        ])
        .areas(area);
        f.render_widget(Paragraph::new(self.tabs_line()), top);
        f.render_widget(Paragraph::new(self.status_line()), status);
        f.render_widget(Paragraph::new(self.notice_line()), notice);
        self.draw_table(f, body);
        f.render_widget(
            Paragraph::new(Line::from(Span::styled(
                "q quit  ? help  Tab/f/l/e/p view  1-9 ←→ sort  r reverse  / filter  space pause",
                Style::default().add_modifier(Modifier::DIM),
            ))),
            keys,
        );
        if self.help {
            self.draw_help(f, area);
        }
    }

    fn tabs_line(&self) -> Line<'static> {
        let mut spans = vec![Span::styled(
            "pyrometer top ",
            Style::default().add_modifier(Modifier::BOLD),
        )];
        for v in View::ALL {
            let style = if v == self.view {
                Style::default().add_modifier(Modifier::REVERSED | Modifier::BOLD)
            } else {
                Style::default()
            };
            spans.push(Span::styled(format!(" {} ", v.title()), style));
        }
        let window = if self.cumulative {
            let (_, _, span, _) = self.live.window(true, self.now());
            format!("  cumulative {:.0}s", span.as_secs_f64())
        } else {
            format!("  last {:.0}s", self.refresh.as_secs_f64())
        };
        spans.push(Span::raw(window));
        if self.paused {
            spans.push(Span::styled(
                "  PAUSED",
                Style::default()
                    .fg(Color::Yellow)
                    .add_modifier(Modifier::BOLD),
            ));
        }
        Line::from(spans)
    }

    fn status_line(&self) -> Line<'static> {
        let p = self.live.cumulative();
        let s = &self.status;
        // Exits are shown once there are some: the line fits 80 columns.
        let exited = if s.exited > 0 {
            format!(" ({} exited)", s.exited)
        } else {
            String::new()
        };
        Line::from(format!(
            "Python {}  {:.0}/{} Hz  {} procs{exited}  errors {} (torn {})  own CPU {:.1}%  {} samples",
            terminal_text(&p.meta.python_version),
            s.rate,
            self.requested_rate,
            s.processes,
            s.errors,
            s.torn_threads,
            s.own_cpu,
            s.samples
        ))
    }

    fn notice_line(&self) -> Line<'static> {
        if let Some(why) = &self.ended {
            return Line::from(Span::styled(
                format!("{why}: showing the last samples; press q to quit"),
                Style::default().fg(Color::Red).add_modifier(Modifier::BOLD),
            ));
        }
        if self.editing_filter {
            return Line::from(format!(
                "filter: {}_  (Enter keeps, Esc clears)",
                self.filter
            ));
        }
        if !self.filter.is_empty() {
            return Line::from(format!("filter: {}  (/ to edit, Esc clears)", self.filter));
        }
        let target = &self.live.cumulative().meta.target;
        Line::from(format!("target: {}", terminal_text(target)))
    }

    /// The rows on screen: sorted, filtered.
    fn shown(&self) -> Table {
        let mut t = self.rows.clone();
        let (column, reverse) = self.sort_of(self.view);
        t.sort(column, reverse);
        t.filter(&self.filter);
        t
    }

    fn draw_table(&self, f: &mut Frame, area: Rect) {
        if area.height == 0 || area.width == 0 {
            return;
        }
        let t = self.shown();
        let (sorted, reverse) = self.sort_of(self.view);
        let keep = fit_columns(t.columns, area.width);
        let header = Row::new(keep.iter().map(|&i| {
            let c = &t.columns[i];
            let mark = match (i == sorted, reverse) {
                (false, _) => "",
                (true, false) => "▼",
                (true, true) => "▲",
            };
            Cell::from(format!("{}{mark}", c.title))
        }))
        .style(Style::default().add_modifier(Modifier::REVERSED));
        let widths: Vec<Constraint> = keep
            .iter()
            .map(|&i| {
                let c = &t.columns[i];
                if c.grow {
                    // Proportional shares of what is left keep each above
                    // its width (fit_columns made room for them all).
                    Constraint::Fill(c.width)
                } else {
                    Constraint::Length(c.width)
                }
            })
            .collect();
        let visible = usize::from(area.height.saturating_sub(1));
        let rows = t.rows.iter().take(visible).map(|row| {
            Row::new(keep.iter().map(|&i| {
                let text = row.get(i).map(|c| c.text.as_str()).unwrap_or("");
                let numeric = matches!(row.get(i).map(|c| &c.key), Some(SortKey::Num(_)));
                if numeric {
                    Cell::from(Line::from(text.to_string()).right_aligned())
                } else {
                    Cell::from(text.to_string())
                }
            }))
        });
        let widget = ratatui::widgets::Table::new(rows, widths)
            .header(header)
            .column_spacing(1);
        f.render_widget(widget, area);
        if t.rows.is_empty() && area.height > 1 {
            let msg = if self.filter.is_empty() {
                "(no samples yet)"
            } else {
                "(nothing matches the filter)"
            };
            let r = Rect {
                y: area.y + 1,
                height: 1,
                ..area
            };
            f.render_widget(Paragraph::new(msg), r);
        }
    }

    fn draw_help(&self, f: &mut Frame, area: Rect) {
        let text = vec![
            Line::from("Tab, Shift-Tab   next / previous view"),
            Line::from("f l e p          functions, lines, endpoints, processes"),
            Line::from("1-9, Left/Right  sort by a column"),
            Line::from("r                reverse the sort"),
            Line::from("/                filter rows (Enter keeps, Esc clears)"),
            Line::from("space            pause the display"),
            Line::from("c                cumulative / last interval"),
            Line::from("0 or R           reset (forget what was sampled)"),
            Line::from("? or h           this help; any key closes it"),
            Line::from("q or Ctrl-C      quit"),
            Line::from(""),
            Line::from("states: PY running Python, NAT native (GIL released, on"),
            Line::from("CPU), GIL waiting for the GIL, IDLE off CPU (--idle)"),
        ];
        let w = area.width.min(62);
        let h = area.height.min(text.len() as u16 + 2);
        let r = Rect {
            x: area.x + (area.width - w) / 2,
            y: area.y + (area.height - h) / 2,
            width: w,
            height: h,
        };
        f.render_widget(Clear, r);
        f.render_widget(
            Paragraph::new(text)
                .wrap(Wrap { trim: false })
                .block(Block::default().borders(Borders::ALL).title(" help ")),
            r,
        );
    }
}

/// End the process when its terminal hangs up (its window closed, tmux
/// killed): the keyboard then reads as end of file, on which crossterm's
/// poll spins without returning, so the view's own loop never sees it, nor
/// a SIGHUP/SIGTERM flag. Nothing can be drawn or restored any more, and
/// nothing is printed (stderr is the dead terminal too).
fn watch_for_hangup() {
    let _ = std::thread::Builder::new()
        .name("hangup".into())
        .spawn(|| loop {
            std::thread::sleep(Duration::from_millis(250));
            if terminal_gone() {
                std::process::exit(crate::exit::FAILURE);
            }
        });
}

/// Whether the terminal on standard output has hung up: after a hangup
/// the kernel answers every terminal ioctl with EIO, while reads of the
/// keyboard just see end of file (which would leave `top` polling for ever).
fn terminal_gone() -> bool {
    let mut attrs = std::mem::MaybeUninit::<libc::termios>::uninit();
    // SAFETY: tcgetattr writes at most one termios into `attrs`.
    unsafe { libc::tcgetattr(libc::STDOUT_FILENO, attrs.as_mut_ptr()) != 0 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pyrometer_sampler::{SampledFrame, ThreadState};
    use ratatui::backend::TestBackend;

    fn args() -> TopArgs {
        TopArgs {
            pid: Some(1),
            rate: 100,
            idle: false,
            mode: Mode::Wall,
            subprocesses: false,
            refresh: 1.0,
            command: Vec::new(),
        }
    }

    fn ui_with_samples() -> Ui {
        ui_in_mode(
            Mode::Wall,
            &[
                ("hot_function_with_a_long_name", 30, ThreadState::Python),
                ("warm", 10, ThreadState::Python),
            ],
        )
    }

    fn ui_in_mode(mode: Mode, samples: &[(&str, usize, ThreadState)]) -> Ui {
        let mut p = Profile::new();
        p.meta.target = "pid 1: python3 \x1b[2Jbusy.py".into();
        p.set_process(1, "python3 busy.py");
        let live = LiveProfile::new(p, Duration::from_millis(10), Duration::ZERO);
        let mut a = args();
        a.mode = mode;
        a.idle = true;
        let mut ui = Ui::new(live, &a, Instant::now());
        for &(name, n, state) in samples {
            for _ in 0..n {
                let sample = Sample {
                    time: Duration::ZERO,
                    pid: 1,
                    thread_id: 1,
                    native_id: Some(1),
                    thread_name: None,
                    state,
                    holds_gil: state == ThreadState::Python,
                    frames: vec![SampledFrame {
                        name: Arc::from(name),
                        filename: Arc::from("/srv/app/busy.py"),
                        line: 3,
                        first_line: 2,
                        code_key: 0,
                    }],
                    truncated: false,
                    walked: true,
                    request: None,
                    category: None,
                };
                // What the sampler thread keeps (crate::tick).
                let kept = crate::tick::keeps(mode, &sample);
                ui.take(Batch {
                    samples: if kept { vec![sample] } else { Vec::new() },
                    attached: Vec::new(),
                    exited: Vec::new(),
                    processes: vec![ProcessStatus {
                        pid: 1,
                        errors: 0,
                        alive: true,
                        rss: None,
                    }],
                    errors: 0,
                    torn_threads: 0,
                });
            }
        }
        ui.refresh();
        ui
    }

    fn render(ui: &Ui, w: u16, h: u16) -> String {
        let mut term = ratatui::Terminal::new(TestBackend::new(w, h)).unwrap();
        term.draw(|f| ui.draw(f)).unwrap();
        let buf = term.backend().buffer().clone();
        let mut out = String::new();
        for y in 0..h {
            for x in 0..w {
                out.push_str(buf[(x, y)].symbol());
            }
            out.push('\n');
        }
        out
    }

    fn press(ui: &mut Ui, code: KeyCode) -> bool {
        ui.key(KeyEvent::new(code, KeyModifiers::NONE))
    }

    #[test]
    fn modes_keep_the_samples_record_keeps() {
        let mix = [
            ("running", 4, ThreadState::Python),
            ("native", 3, ThreadState::Native),
            ("waiting", 2, ThreadState::GilWait),
            ("sleeping", 1, ThreadState::Idle),
        ];
        let functions = |mode| {
            let ui = ui_in_mode(mode, &mix);
            let mut names: Vec<String> =
                ui.shown().rows.iter().map(|r| r[8].text.clone()).collect();
            names.sort();
            names
        };
        assert_eq!(
            functions(Mode::Wall),
            ["native", "running", "sleeping", "waiting"]
        );
        assert_eq!(functions(Mode::Cpu), ["native", "running"]);
        assert_eq!(functions(Mode::Gil), ["running"]);
    }

    #[test]
    fn an_exited_process_drops_its_caches_as_record_does() {
        let mut ui = ui_with_samples();
        assert!(ui.live.cumulative().table_sizes().last_paths > 0);
        ui.take(Batch {
            samples: Vec::new(),
            attached: Vec::new(),
            exited: vec![1],
            processes: Vec::new(),
            errors: 0,
            torn_threads: 0,
        });
        assert_eq!(ui.live.cumulative().table_sizes().last_paths, 0);
        ui.refresh();
        let screen = render(&ui, 120, 24);
        assert!(screen.contains("(1 exited)"), "{screen}");
    }

    #[test]
    fn renders_at_any_size_without_panicking() {
        let mut ui = ui_with_samples();
        for (w, h) in [(80, 24), (40, 10), (20, 5), (10, 3), (1, 1), (200, 60)] {
            for view in View::ALL {
                ui.switch(view);
                ui.help = false;
                render(&ui, w, h);
                ui.help = true;
                render(&ui, w, h);
            }
        }
        ui.help = false;
        ui.switch(View::Functions);
        let screen = render(&ui, 80, 24);
        assert!(screen.contains("hot_function"), "{screen}");
        assert!(screen.contains("OWN%"), "{screen}");
        assert!(!screen.contains('\x1b'), "{screen}");
        let small = render(&ui, 40, 10);
        assert!(small.contains("hot_function"), "{small}");
        assert!(small.contains("OWN%"), "{small}");
    }

    #[test]
    fn keys_change_view_sort_filter_and_quit() {
        let mut ui = ui_with_samples();
        let first = |ui: &Ui| ui.shown().rows[0][8].text.clone();
        assert_eq!(first(&ui), "hot_function_with_a_long_name");
        press(&mut ui, KeyCode::Char('9'));
        assert_eq!(first(&ui), "hot_function_with_a_long_name");
        press(&mut ui, KeyCode::Char('r'));
        assert_eq!(first(&ui), "warm");
        press(&mut ui, KeyCode::Char('1'));
        press(&mut ui, KeyCode::Char('/'));
        for c in "WAR".chars() {
            press(&mut ui, KeyCode::Char(c));
        }
        press(&mut ui, KeyCode::Enter);
        assert_eq!(ui.shown().rows.len(), 1);
        press(&mut ui, KeyCode::Esc);
        assert_eq!(ui.shown().rows.len(), 2);
        press(&mut ui, KeyCode::Char('l'));
        assert_eq!(ui.view, View::Lines);
        press(&mut ui, KeyCode::Tab);
        assert_eq!(ui.view, View::Endpoints);
        press(&mut ui, KeyCode::BackTab);
        assert_eq!(ui.view, View::Lines);
        press(&mut ui, KeyCode::Char('f'));
        press(&mut ui, KeyCode::Char('0'));
        assert!(ui.shown().rows.is_empty());
        assert!(press(&mut ui, KeyCode::Char('?')));
        assert!(ui.help);
        assert!(press(&mut ui, KeyCode::Char('x')));
        assert!(!ui.help);
        press(&mut ui, KeyCode::Char('/'));
        press(&mut ui, KeyCode::Char('w'));
        press(&mut ui, KeyCode::Enter);
        assert_eq!(ui.filter, "w");
        assert!(ui.key(KeyEvent::new(KeyCode::Char('l'), KeyModifiers::ALT)));
        assert_eq!(ui.filter, "");
        assert_eq!(ui.view, View::Lines);
        assert!(!press(&mut ui, KeyCode::Char('q')));
        assert!(!ui.key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)));
    }
}
