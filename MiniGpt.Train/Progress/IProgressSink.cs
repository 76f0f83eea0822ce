namespace MiniGpt.Train.Progress;

/// <summary>
/// Where a verb reports how far it got. Log lines are the verb's record (the same text in a terminal
/// and in a pipe); Report is the live view, which a terminal shows as a bar and plain output drops, so
/// that logs read by CI or by tests hold only the lines. Report may be called often: implementations
/// throttle it, and callers build the status text only when <see cref="WantsStatus"/> is true.
/// </summary>
public interface IProgressSink
{
    /// <summary>Writes one log line (in a terminal, above the live bar).</summary>
    void Line(string text);

    /// <summary>True when a call to Report now would be shown (a terminal whose last refresh is old enough).</summary>
    bool WantsStatus { get; }

    /// <summary>Moves the live view to done of total and shows status beside the bar.</summary>
    void Report(double done, double total, string status);
}
