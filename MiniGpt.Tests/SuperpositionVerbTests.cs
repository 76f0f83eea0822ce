using System.Text.Json;
using Xunit;

namespace MiniGpt.Tests;

/// <summary>The superposition verb end to end: its report on disk, the same numbers for any thread count, and one-line errors.</summary>
public class SuperpositionVerbTests
{
    private static readonly string[] Small =
        ["superposition", "--n", "6", "--m", "3", "--sparsities", "0,0.9", "--steps", "300", "--batch-size", "128",
         "--plane-n", "4", "--phase-grid", "3", "--phase-steps", "200", "--phase-restarts", "1"];

    [Fact]
    public void WritesJsonPlotsAndAPageThatEmbedsThem()
    {
        string dir = TestPaths.TempDir("superposition-verb");
        string outDir = Path.Combine(dir, "report");
        var r = TestPaths.Cli([.. Small, "--out", outDir, "--threads", "2"]);
        Assert.True(r.Code == 0, r.Err);
        Assert.Contains("n = 6 features into m = 3 dimensions", r.Out);
        Assert.Contains("phase diagram (n = 2, m = 1, 3×3", r.Out);
        var json = JsonDocument.Parse(File.ReadAllText(Path.Combine(outDir, "superposition.json"))).RootElement;
        var main = json.GetProperty("main").EnumerateArray().ToList();
        Assert.Equal(2, main.Count);
        Assert.Equal(0.9, main[1].GetProperty("sparsity").GetDouble());
        Assert.Equal(3, main[0].GetProperty("W").GetArrayLength());
        Assert.Equal(6, main[0].GetProperty("W")[0].GetArrayLength());
        Assert.Equal(6, main[0].GetProperty("WtW").GetArrayLength());
        // the norms are the square roots of WᵀW's diagonal, and the represented count matches the norms
        for (int i = 0; i < 6; i++)
            Assert.Equal(Math.Sqrt(main[0].GetProperty("WtW")[i][i].GetDouble()), main[0].GetProperty("norms")[i].GetDouble(), 9);
        Assert.Equal(main[0].GetProperty("norms").EnumerateArray().Count(v => v.GetDouble() > 0.5), main[0].GetProperty("represented_count").GetInt32());
        var plane = json.GetProperty("plane").EnumerateArray().ToList();
        Assert.Equal(2, plane.Count);
        Assert.Equal(4, plane[0].GetProperty("angles_deg").GetArrayLength());
        var phase = json.GetProperty("phase");
        Assert.Equal(9, phase.GetProperty("cells").GetArrayLength());
        Assert.Equal(9, phase.GetProperty("counts").EnumerateObject().Sum(p => p.Value.GetInt32()));

        // every plot the JSON lists is on disk and embedded in the page, and no other PNG is there
        var plots = json.GetProperty("plots").EnumerateArray().Select(p => p.GetString()!).ToList();
        Assert.Equal(2 * 2 + 1 + 2 + 1, plots.Count); // WᵀW and norms per sparsity, dimensionality, two planes, phase
        string html = File.ReadAllText(Path.Combine(outDir, "superposition.html"));
        foreach (string p in plots)
        {
            byte[] png = File.ReadAllBytes(Path.Combine(outDir, p));
            Assert.Equal(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G' }, png[..4]);
            Assert.Contains($"src=\"data:image/png;base64,{Convert.ToBase64String(png)}\"", html);
        }
        Assert.Equal(plots.Order(), Directory.GetFiles(outDir, "*.png").Select(Path.GetFileName).Order()!);
        Assert.DoesNotContain("<script", html);

        // --json on one thread prints the same models (deterministic for a seed, whatever the thread count)
        var j = TestPaths.Cli([.. Small, "--out", Path.Combine(dir, "again"), "--threads", "1", "--json"]);
        Assert.True(j.Code == 0, j.Err);
        var again = JsonDocument.Parse(j.Out).RootElement;
        Assert.Equal(json.GetProperty("main").GetRawText(), again.GetProperty("main").GetRawText());
        Assert.Equal(json.GetProperty("plane").GetRawText(), again.GetProperty("plane").GetRawText());
        Assert.Equal(json.GetProperty("phase").GetRawText(), again.GetProperty("phase").GetRawText());

        // a second run without the plane and the phase diagram removes their plots
        var narrow = TestPaths.Cli("superposition", "--n", "6", "--m", "3", "--sparsities", "0.5", "--steps", "50", "--plane-n", "0", "--phase-grid", "0", "--out", outDir);
        Assert.True(narrow.Code == 0, narrow.Err);
        var nj = JsonDocument.Parse(File.ReadAllText(Path.Combine(outDir, "superposition.json"))).RootElement;
        Assert.Equal(JsonValueKind.Null, nj.GetProperty("phase").ValueKind);
        Assert.Equal(nj.GetProperty("plots").EnumerateArray().Select(p => p.GetString()!).Order(), Directory.GetFiles(outDir, "*.png").Select(Path.GetFileName).Order()!);
        Directory.Delete(dir, true);
    }

    [Fact]
    public void SummaryFitsIn80ColumnsWithARowPerSparsity()
    {
        string dir = TestPaths.TempDir("superposition-verb-width");
        // --plane-n 5 at S = 0.95: the pentagon, the widest m = 2 line (five angles and five D_i)
        var r = TestPaths.Cli("superposition", "--n", "6", "--m", "3", "--sparsities", "0,0.95", "--steps", "300", "--batch-size", "128",
            "--plane-n", "5", "--phase-grid", "3", "--phase-steps", "200", "--phase-restarts", "1", "--out", Path.Combine(dir, "report"), "--threads", "2");
        Assert.True(r.Code == 0, r.Err);
        VerbSummaryWidth.AssertFits("superposition", r.Out, dir);
        Assert.Equal(1, VerbSummaryWidth.RowsStartingWith(r.Out, "  0.95"));
        Assert.Equal(1, VerbSummaryWidth.RowsStartingWith(r.Out, "  0"));
        Assert.Contains("agrees with the closed-form theory in", r.Out);
        Directory.Delete(dir, true);
    }

    [Theory]
    [InlineData(1, "--m", "5", "--m < --n")]
    [InlineData(1, "--m", "0", "--m ≥ 1")]
    [InlineData(1, "--sparsities", "0,1", "not a sparsity in [0, 1)")]
    [InlineData(1, "--sparsities", "-0.1", "not a sparsity in [0, 1)")]
    [InlineData(2, "--sparsities", "0,x", "'x' is not a number")]
    [InlineData(2, "--sparsities", ",", "--sparsities is empty")]
    [InlineData(1, "--importance", "1.5", "--importance 1.5")]
    [InlineData(1, "--steps", "0", "--steps 0")]
    [InlineData(1, "--batch-size", "0", "--batch-size 0")]
    [InlineData(1, "--lr", "0", "--lr 0")]
    [InlineData(1, "--plane-n", "2", "--plane-n 2")]
    [InlineData(1, "--phase-grid", "1", "--phase-grid 1")]
    [InlineData(2, "--n", "x", "--n expects an integer")]
    public void BadValuesAreOneLineErrors(int code, string option, string value, string fragment)
    {
        string[] args = option == "--m" ? ["superposition", "--n", "5", option, value] : ["superposition", option, value];
        TestPaths.AssertOneLineError(TestPaths.Cli([.. args, "--out", Path.Combine(Path.GetTempPath(), "minigpt-tests", "never-written")]), code, fragment);
    }

    [Fact]
    public void OutThatIsAFileIsAnError()
    {
        string dir = TestPaths.TempDir("superposition-out-file");
        string file = Path.Combine(dir, "f");
        File.WriteAllText(file, "");
        TestPaths.AssertOneLineError(TestPaths.Cli("superposition", "--out", file), 1, "is a file");
        Directory.Delete(dir, true);
    }
}
