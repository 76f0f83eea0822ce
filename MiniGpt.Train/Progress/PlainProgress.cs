namespace MiniGpt.Train.Progress;

/// <summary>Progress for pipes, files and CI: the log lines as they are, and no live view.</summary>
public sealed class PlainProgress(TextWriter stdout) : IProgressSink
{
    public void Line(string text) => stdout.WriteLine(text);
    public bool WantsStatus => false;
    public void Report(double done, double total, string status) { }
}
