using MiniGpt.Train.Progress;
using Xunit;

namespace MiniGpt.Tests;

/// <summary>
/// The summaries sae, patch and superposition print fit a terminal of ConsoleLine.Columns: every table line and status
/// line, once the test's long temporary folder is written as "D". Warnings and notes are sentences, left to the terminal to wrap.
/// </summary>
internal static class VerbSummaryWidth
{
    public static void AssertFits(string what, string output, string dir)
    {
        var lines = output.Replace(dir, "D").Split('\n').Select(l => l.TrimEnd('\r')).ToList();
        Assert.True(lines.Count(l => l.Length > 0) >= 4, $"{what}: no summary in: {output}");
        foreach (string line in lines.Where(l => !l.StartsWith("warning: ", StringComparison.Ordinal) && !l.StartsWith("note: ", StringComparison.Ordinal)))
            Assert.True(line.Length <= ConsoleLine.Columns, $"{what}: {line.Length} columns: {line}");
    }

    /// <summary>The lines that start with a table row's first column (a grid's name, a sparsity): one per table it is in.</summary>
    public static int RowsStartingWith(string output, string first) =>
        output.Split('\n').Count(l => l.StartsWith(first + " ", StringComparison.Ordinal));
}
