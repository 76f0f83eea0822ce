using MiniGpt.Train.Progress;
using Spectre.Console;
using Xunit;

namespace MiniGpt.Tests;

/// <summary>The two progress views: a live bar with the log lines above it in a terminal, the lines alone elsewhere.</summary>
public class ProgressTests
{
    [Fact]
    public void PlainProgressWritesTheLinesAndNothingElse()
    {
        var w = new StringWriter();
        int r = ProgressView.Run(w, "train", sink =>
        {
            sink.Line("step 1/2 | loss 1.0000");
            Assert.False(sink.WantsStatus);
            sink.Report(1, 2, "status that only a terminal shows");
            sink.Line("step 2/2 | loss 0.5000");
            return 7;
        });
        Assert.Equal(7, r);
        Assert.Equal("step 1/2 | loss 1.0000\nstep 2/2 | loss 0.5000\n", w.ToString().Replace("\r\n", "\n"));
        Assert.False(ProgressView.IsTerminal(w));
    }

    [Fact]
    public void TerminalProgressDrawsABarWithTheStatusAndKeepsTheLines()
    {
        var w = new StringWriter();
        var console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Ansi = AnsiSupport.Yes, ColorSystem = ColorSystemSupport.NoColors, Interactive = InteractionSupport.Yes,
            Out = new AnsiConsoleOutput(w),
        });
        console.Profile.Width = 120;
        TerminalProgress.Run(console, "train", sink =>
        {
            Assert.True(sink.WantsStatus);                // the first report is always shown
            sink.Line("step 250/1000 | loss 4.1944");
            sink.Report(250, 1000, "step 250/1000 | loss 4.1944 | 105,008 tok/s | ETA 0:26");
            Assert.False(sink.WantsStatus);               // then at most every 100 ms
            Thread.Sleep(300);                            // Spectre redraws on its own clock
            return 0;
        });
        string s = w.ToString();
        Assert.Contains("step 250/1000 | loss 4.1944\n", s.Replace("\r\n", "\n"));
        Assert.Contains("25%", s);
        Assert.Contains("105,008 tok/s | ETA 0:26", s);
        Assert.Contains("━", s);
    }
}
