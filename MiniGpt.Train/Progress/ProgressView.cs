using Spectre.Console;

namespace MiniGpt.Train.Progress;

/// <summary>Chooses the progress view for a verb's output: a live bar in a terminal, plain lines otherwise.</summary>
public static class ProgressView
{
    /// <summary>
    /// True when stdout is this process's console and that console is a terminal. MINIGPT_PLAIN=1 (or
    /// TERM=dumb) asks for plain lines in a terminal too, e.g. to copy a log.
    /// </summary>
    public static bool IsTerminal(TextWriter stdout) =>
        ReferenceEquals(stdout, Console.Out) && !Console.IsOutputRedirected
        && Environment.GetEnvironmentVariable("MINIGPT_PLAIN") is null or "" or "0"
        && Environment.GetEnvironmentVariable("TERM") != "dumb";

    /// <summary>Runs body with the view that suits stdout; title names the work on the bar.</summary>
    public static T Run<T>(TextWriter stdout, string title, Func<IProgressSink, T> body) =>
        IsTerminal(stdout) ? TerminalProgress.Run(AnsiConsole.Console, title, body) : body(new PlainProgress(stdout));
}
