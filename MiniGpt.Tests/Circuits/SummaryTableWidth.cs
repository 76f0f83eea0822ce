using System.Text.RegularExpressions;
using MiniGpt.Train.Report;
using Xunit;

namespace MiniGpt.Tests.Circuits;

/// <summary>The circuits summary's tables (their header lines and one line per head) fit a terminal of SummaryTable.TableWidth columns.</summary>
internal static partial class SummaryTableWidth
{
    public static void AssertTablesFit(string summary)
    {
        var rows = summary.Split('\n').Select(l => l.TrimEnd('\r')).Where(l => TableRow().IsMatch(l)).ToList();
        Assert.True(rows.Count >= 4, "the summary has no head tables");
        Assert.All(rows, l => Assert.True(l.Length <= SummaryTable.TableWidth, $"{l.Length} columns: {l}"));
    }

    [GeneratedRegex(@"^(head  |L\d+H\d+ )")]
    private static partial Regex TableRow();
}
