using System.Diagnostics;
using Spectre.Console;
using Spectre.Console.Rendering;

namespace MiniGpt.Train.Progress;

/// <summary>
/// Progress in a terminal: a Spectre.Console live bar ("title ━━━━━╺━━━ 42% status") at the bottom,
/// with the log lines scrolling above it (Spectre's progress display re-draws itself below anything
/// written to the console while it runs). Reports are shown at most every 100 ms, so a fast loop
/// pays one clock read per call.
/// </summary>
public sealed class TerminalProgress : IProgressSink
{
    private static readonly long Interval = Stopwatch.Frequency / 10;

    private readonly IAnsiConsole _console;
    private readonly ProgressTask _task;
    private readonly StatusColumn _status;
    private long _lastReport; // 0: the first report is always shown

    private TerminalProgress(IAnsiConsole console, ProgressTask task, StatusColumn status)
    {
        _console = console; _task = task; _status = status;
    }

    /// <summary>Runs body with a live bar titled title on console; the bar is removed when body returns or throws.</summary>
    public static T Run<T>(IAnsiConsole console, string title, Func<IProgressSink, T> body)
    {
        var status = new StatusColumn();
        return new Spectre.Console.Progress(console)
            .AutoClear(true)
            .Columns(new TaskDescriptionColumn { Alignment = Justify.Left }, new ProgressBarColumn(), new PercentageColumn(), status)
            .Start(ctx =>
            {
                var task = ctx.AddTask(Markup.Escape(title), autoStart: true, maxValue: 1);
                return body(new TerminalProgress(console, task, status));
            });
    }

    /// <summary>
    /// Writes the text above the bar, one console line at a time: Spectre redraws the live bar below what was
    /// written and counts on single lines, so a two-line text (train's evaluation under its step line) written
    /// whole had its second line overdrawn by the bar.
    /// </summary>
    public void Line(string text)
    {
        foreach (string line in text.Split('\n')) _console.WriteLine(line.TrimEnd('\r'), Style.Plain);
    }

    public bool WantsStatus => Stopwatch.GetTimestamp() - _lastReport >= Interval;

    public void Report(double done, double total, string status)
    {
        _lastReport = Stopwatch.GetTimestamp();
        _task.MaxValue = Math.Max(total, 1e-9);
        _task.Value = Math.Clamp(done, 0, _task.MaxValue);
        _status.Text = status;
    }

    /// <summary>The free-form status after the bar: step, losses, speed, ETA.</summary>
    private sealed class StatusColumn : ProgressColumn
    {
        public volatile string Text = "";
        protected override bool NoWrap => true;
        public override IRenderable Render(RenderOptions options, ProgressTask task, TimeSpan deltaTime) => new Text(Text);
    }
}
