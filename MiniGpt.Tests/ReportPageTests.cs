using System.Text.Json;
using System.Text.RegularExpressions;
using MiniGpt.Checkpoints;
using MiniGpt.Data;
using MiniGpt.Model;
using MiniGpt.Train.Report;
using Xunit;

namespace MiniGpt.Tests;

/// <summary>
/// report.html as a reader gets it: every head's pattern on a window of the data, the page run in headless
/// chromium (no error, the hover changes what is shown, a click in the grid selects, a header sorts), and the
/// ablation wording that follows the sign.
/// </summary>
public sealed class ReportPageTests
{
    /// <summary>A 2-layer, 3-head char model (constructed, not trained) on the first 6,000 characters of the corpus, and its circuits report.</summary>
    private static (string Dir, string Ckpt, string Text, string Report) CharModelReport(string name, int seed = 7)
    {
        string dir = TestPaths.TempDir(name);
        string text = Path.Combine(dir, "t.txt");
        File.WriteAllText(text, File.ReadAllText(TestPaths.Shakespeare)[..6000]);
        var tok = CharTokenizer.FromText(File.ReadAllText(text));
        var m = GptModel.Create(new ModelConfig { NLayers = 2, DModel = 24, NHeads = 3, DHead = 8, DMlp = 48, NCtx = 48, DVocab = tok.VocabSize }, (ulong)seed);
        string ckpt = Path.Combine(dir, "m.safetensors");
        Checkpoint.Save(ckpt, m, tok.ToJson());
        string outDir = Path.Combine(dir, "report");
        var r = TestPaths.Cli("circuits", "--checkpoint", ckpt, "--data", text, "--out", outDir, "--batches", "1");
        Assert.True(r.Code == 0, r.Err);
        return (dir, ckpt, text, Path.Combine(outDir, "report.html"));
    }

    [ChromiumFact]
    public void ReportRunsInHeadlessChromiumAndTheHoverChangesTheView()
    {
        var (dir, _, _, report) = CharModelReport("report-page");
        string html = File.ReadAllText(report);
        // self-contained: nothing loaded from elsewhere (PNGs are data: URIs, links only to the page's own sections)
        Assert.DoesNotMatch(new Regex("(src|href)=\"(?!data:|#)"), html);
        Assert.DoesNotContain("<link", html);

        string? result = HeadlessChromium.SelfTest(report);
        Assert.True(result != null && result.StartsWith("PASS", StringComparison.Ordinal), $"self-test: {result ?? "(no result: the page's script did not run)"}");

        // the check can fail: the same page with the hover handler disabled, and with a script error
        string broken = Path.Combine(dir, "report", "broken-hover.html");
        Assert.Contains("function onTokenHover(e) {", html);
        File.WriteAllText(broken, html.Replace("function onTokenHover(e) {", "function onTokenHover(e) { return;"));
        string? b = HeadlessChromium.SelfTest(broken);
        Assert.True(b != null && b.StartsWith("FAIL", StringComparison.Ordinal) && b.Contains("hovering the last token did not change"), $"broken hover: {b}");
        string thrown = Path.Combine(dir, "report", "throws.html");
        File.WriteAllText(thrown, html.Replace("function buildGrid() {", "function buildGrid() { null.x;"));
        string? t = HeadlessChromium.SelfTest(thrown);
        Assert.True(t != null && t.StartsWith("FAIL", StringComparison.Ordinal) && t.Contains("init: "), $"throwing page: {t}");
        Directory.Delete(dir, true);
    }

    [Fact]
    public void TheWindowHoldsEveryHeadOnTheDataText()
    {
        var (dir, ckpt, text, report) = CharModelReport("report-window");
        var loaded = Checkpoint.Load(ckpt);
        var data = EvalData.Open(text, loaded, 4, 1);
        var w = AttentionWindow.Compute(loaded.Model, data);
        // the first window of the text, 48 tokens (n_ctx < 64), each head's pattern as the cache has it, to 1/510
        Assert.Equal(data.Batches[0].Inputs[..48], w.Tokens);
        Assert.Equal(2 * 3 * AttentionWindow.TriangleSize(48), w.Patterns.Length);
        var cache = loaded.Model.RunWithCache(w.Tokens, 1, 48);
        for (int l = 0; l < 2; l++)
        {
            var p = cache[$"blocks.{l}.attn.hook_pattern"].Span;
            for (int h = 0; h < 3; h++)
                for (int i = 0; i < 48; i++)
                    for (int j = 0; j <= i; j++)
                        Assert.True(Math.Abs(w.Weight(l, h, i, j) - p[(h * 48 + i) * 48 + j]) <= 0.5 / 255 + 1e-6, $"L{l}H{h} [{i},{j}]");
        }
        Assert.Null(w.Predictable);

        // the page carries it as JSON: the text of those tokens, every head's bytes
        string html = File.ReadAllText(report);
        var json = Regex.Match(html, "<script type=\"application/json\" id=\"attn-data\">(.*?)</script>", RegexOptions.Singleline);
        Assert.True(json.Success);
        var d = JsonDocument.Parse(json.Groups[1].Value).RootElement;
        Assert.Equal(48, d.GetProperty("T").GetInt32());
        Assert.Equal(File.ReadAllText(text)[..48], string.Concat(d.GetProperty("text").EnumerateArray().Select(x => x.GetString()!.Replace("↵", "\n"))));
        Assert.Equal(w.Patterns, Convert.FromBase64String(d.GetProperty("patterns").GetString()!));
        Directory.Delete(dir, true);
    }

    [Fact]
    public void TheInductionTaskWindowHoldsACopiedSpan()
    {
        var m = GptModel.Create(new ModelConfig { NLayers = 1, DModel = 16, NHeads = 2, DHead = 8, AttnOnly = true, NCtx = 32, DVocab = 64 }, 1);
        string dir = TestPaths.TempDir("report-induction");
        string ckpt = Path.Combine(dir, "m.safetensors");
        Checkpoint.Save(ckpt, m, null);
        var loaded = Checkpoint.Load(ckpt);
        var w = AttentionWindow.Compute(loaded.Model, EvalData.Open("induction", loaded, 8, 1));
        Assert.NotNull(w.Predictable);
        Assert.Contains(true, w.Predictable!);
        Directory.Delete(dir, true);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(4)]
    [InlineData(5)]
    public void TheReportsHeadlineSaysWhichWayTheLossMoved(int seed)
    {
        var (dir, _, _, report) = CharModelReport("report-headline", seed);
        var json = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "report", "circuits.json"))).RootElement.GetProperty("headline");
        double clean = json.GetProperty("clean_repeat_loss").GetDouble(), ablated = json.GetProperty("ablated_repeat_loss").GetDouble();
        string lead = Regex.Match(File.ReadAllText(report), "<div class=\"lead\">(.*?)</div>").Groups[1].Value;
        // the Findings box leads with the library's headline (CircuitsResult.Headline), a clause a line, the ablated head's first
        string line = Regex.Replace(lead.Replace("<br>", "; "), "</?b>", "");
        Assert.Equal(System.Net.WebUtility.HtmlEncode(json.GetProperty("text").GetString()!), line);
        string first = line.Split("; ")[0];
        Assert.StartsWith("ablating " + json.GetProperty("ablated_head").GetString(), first);
        Assert.Contains(ablated < clean ? " lowers " : ablated > clean ? " raises " : " leaves ", first);
        AssertNotesFollowTheNumbers(Path.Combine(dir, "report"));
        Directory.Delete(dir, true);
    }

    /// <summary>
    /// The page's two caveats appear exactly when circuits.json's numbers call for them: "identical by construction" when
    /// induction and prefix-matching are equal for every head, the ICL note exactly when circuits.json has one.
    /// </summary>
    internal static void AssertNotesFollowTheNumbers(string reportDir)
    {
        var j = JsonDocument.Parse(File.ReadAllText(Path.Combine(reportDir, "circuits.json"))).RootElement;
        string html = File.ReadAllText(Path.Combine(reportDir, "report.html"));
        bool same = j.GetProperty("heads").EnumerateArray().All(h => Math.Abs(h.GetProperty("induction").GetDouble() - h.GetProperty("prefix_matching").GetDouble()) <= 1e-9);
        Assert.Equal(same, html.Contains("identical by construction"));
        var note = j.GetProperty("icl_score").GetProperty("note");
        if (note.ValueKind == JsonValueKind.String) Assert.Contains(System.Net.WebUtility.HtmlEncode(note.GetString()!), html);
        else Assert.DoesNotContain("U-shaped", html);
    }
}
