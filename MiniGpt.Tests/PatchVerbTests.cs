using System.Text.Json;
using MiniGpt.Checkpoints;
using MiniGpt.Data;
using MiniGpt.Model;
using Xunit;

namespace MiniGpt.Tests;

/// <summary>
/// The patch verb end to end: its report on disk (patch.json, the PNGs it lists, patch.html), numbers
/// checked against direct forward passes of the checkpoint, the direction flag, and one-line errors.
/// </summary>
public class PatchVerbTests
{
    private static (string Dir, string Checkpoint) InductionCheckpoint(string name, int layers = 2)
    {
        // no tokenizer: the verb runs the induction pairs by default. Untrained weights are enough here:
        // the tests check the plumbing and the numbers against direct computation, not what a model learned.
        string dir = TestPaths.TempDir(name);
        var m = GptModel.Create(new ModelConfig { NLayers = layers, DModel = 16, NHeads = 2, DHead = 8, AttnOnly = true, NCtx = 12, DVocab = 24 }, 3);
        string ckpt = Path.Combine(dir, "ind.safetensors");
        Checkpoint.Save(ckpt, m, null);
        return (dir, ckpt);
    }

    private static (string Dir, string Checkpoint, CharTokenizer Tok) CharCheckpoint(string name)
    {
        string dir = TestPaths.TempDir(name);
        var tok = CharTokenizer.FromText("abcdefgh xyz.");
        var m = GptModel.Create(new ModelConfig { NLayers = 2, DModel = 16, NHeads = 2, DHead = 8, DMlp = 32, NCtx = 16, DVocab = tok.VocabSize }, 5);
        string ckpt = Path.Combine(dir, "char.safetensors");
        Checkpoint.Save(ckpt, m, tok.ToJson());
        return (dir, ckpt, tok);
    }

    private static JsonElement Grid(JsonElement json, string name) =>
        json.GetProperty("exact").EnumerateArray().Single(g => g.GetProperty("name").GetString() == name);

    /// <summary>logit(answer) − logit(wrong) at position pos of one prompt, by a plain forward pass.</summary>
    private static double LogitDiff(GptModel m, int[] tokens, int pos, int answer, int wrong)
    {
        m.Forward(tokens, default, 1, tokens.Length);
        var row = m.Logits.Slice(pos * m.Config.DVocab, m.Config.DVocab);
        return row[answer] - row[wrong];
    }

    [Fact]
    public void InductionPatchingWritesJsonPlotsAndAPageThatEmbedsThem()
    {
        var (dir, ckpt) = InductionCheckpoint("patch-verb-ind");
        var r = TestPaths.Cli("patch", "--checkpoint", ckpt, "--batch", "4", "--threads", "1");
        Assert.True(r.Code == 0, r.Err);
        Assert.Contains("denoising (one clean activation patched into the corrupted run)", r.Out);
        Assert.Contains("path patching into L1H", r.Out);
        Assert.Contains("direct logit attribution", r.Out);
        string outDir = Path.Combine(dir, "ind.patch");
        var json = JsonDocument.Parse(File.ReadAllText(Path.Combine(outDir, "patch.json"))).RootElement;

        Assert.Equal("denoising", json.GetProperty("direction").GetString());
        Assert.Equal("logit_diff", json.GetProperty("metric").GetString());
        var prompts = json.GetProperty("prompts");
        Assert.Equal(4, prompts.GetProperty("batch").GetInt32());
        Assert.Equal(12, prompts.GetProperty("seq_len").GetInt32());
        // an attention-only model has no mlp_out grid; every other standard grid is there, exact and attributed
        string[] grids = ["resid_pre", "attn_out", "z", "z_by_pos", "q", "k", "v", "pattern"];
        Assert.Equal(grids, json.GetProperty("exact").EnumerateArray().Select(g => g.GetProperty("name").GetString()!).ToArray());
        Assert.Equal(grids, json.GetProperty("attribution").EnumerateArray().Select(g => g.GetProperty("name").GetString()!).ToArray());
        Assert.Equal(grids.Length, json.GetProperty("comparisons").GetArrayLength());
        Assert.Equal(new[] { 2, 2 }, Grid(json, "z").GetProperty("shape").EnumerateArray().Select(e => e.GetInt32()).ToArray());
        Assert.Equal(new[] { 2, 12 }, Grid(json, "resid_pre").GetProperty("shape").EnumerateArray().Select(e => e.GetInt32()).ToArray());
        // the induction pairs share their second halves, so patching resid_pre at layer 0 in the second half changes nothing
        // (the patched run is the corrupted run: its raw metric is the corrupted one)
        double corrupted = json.GetProperty("corrupted_metric").GetDouble();
        var resid0 = Grid(json, "resid_pre").GetProperty("raw")[0].EnumerateArray().Select(e => e.GetDouble()).ToArray();
        for (int t = 6; t < 12; t++) Assert.True(Math.Abs(resid0[t] - corrupted) < 1e-5, $"resid_pre L0 pos {t} = {resid0[t]} vs corrupted {corrupted}");
        // the receivers 'auto' picks are two heads of layer 1, each with q, k and v paths
        Assert.Equal(6, json.GetProperty("paths").GetArrayLength());
        Assert.All(json.GetProperty("paths").EnumerateArray(), p => Assert.Equal(1, p.GetProperty("receiver_layer").GetInt32()));
        // DLA: the parts add up to the clean logit difference
        var dla = json.GetProperty("direct_logit_attribution");
        Assert.Equal(json.GetProperty("clean_metric").GetDouble(), dla.GetProperty("logit_diff").GetDouble(), 4);
        Assert.Equal(dla.GetProperty("logit_diff").GetDouble(), dla.GetProperty("sum").GetDouble(), 3);
        // saturation: one max-probability per head, each a probability
        var sat = json.GetProperty("attention_saturation");
        Assert.Equal(2, sat.GetArrayLength());
        Assert.All(sat.EnumerateArray().SelectMany(l => l.EnumerateArray()), v => Assert.InRange(v.GetDouble(), 0, 1));

        // every plot the JSON lists is on disk and embedded in the page; no other patch_*.png is left
        var plots = json.GetProperty("plots").EnumerateArray().Select(p => p.GetString()!).ToList();
        Assert.True(plots.Count >= 10, $"{plots.Count} plots");
        Assert.Contains($"{plots.Count} plots", r.Out);
        string html = File.ReadAllText(Path.Combine(outDir, "patch.html"));
        foreach (string p in plots)
        {
            byte[] png = File.ReadAllBytes(Path.Combine(outDir, p));
            Assert.Equal(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G' }, png[..4]);
            Assert.Contains($"src=\"data:image/png;base64,{Convert.ToBase64String(png)}\"", html);
        }
        Assert.Equal(plots.Order(), Directory.GetFiles(outDir, "*.png").Select(Path.GetFileName).Order()!);
        // the grid, path and logit-lens tables sort on a click, through the report's own inline script (nothing loaded from elsewhere)
        Assert.Equal(3, System.Text.RegularExpressions.Regex.Matches(html, "<table class=\"sortable\"><thead>").Count);
        Assert.Contains("function makeSortable(table)", html);
        Assert.DoesNotContain("<script src", html);

        // --json prints the same document the file holds
        var j = TestPaths.Cli("patch", "--checkpoint", ckpt, "--batch", "4", "--threads", "1", "--json", "--out", Path.Combine(dir, "again"));
        Assert.True(j.Code == 0, j.Err);
        Assert.Equal(File.ReadAllText(Path.Combine(dir, "again", "patch.json")).TrimEnd(), j.Out.TrimEnd());
        var again = JsonDocument.Parse(j.Out).RootElement;
        Assert.Equal(Grid(json, "z").GetProperty("raw").GetRawText(), Grid(again, "z").GetProperty("raw").GetRawText()); // deterministic for a seed

        // --receivers auto with no z among the grids: the receivers are still picked, from z patching run for that, and said so
        var noZ = TestPaths.Cli("patch", "--checkpoint", ckpt, "--batch", "4", "--sites", "k", "--no-attribution", "--json", "--out", Path.Combine(dir, "noz"));
        Assert.True(noZ.Code == 0, noZ.Err);
        var nz = JsonDocument.Parse(noZ.Out).RootElement;
        Assert.Equal(json.GetProperty("paths").EnumerateArray().Select(x => x.GetProperty("receiver").GetString()).ToArray(),
            nz.GetProperty("paths").EnumerateArray().Select(x => x.GetProperty("receiver").GetString()).ToArray());
        Assert.Contains("the grids hold no z", Assert.Single(nz.GetProperty("notes").EnumerateArray()).GetString());
        Assert.Equal(0, json.GetProperty("notes").GetArrayLength());
        Assert.Contains("note: --receivers auto: the grids hold no z",
            TestPaths.Cli("patch", "--checkpoint", ckpt, "--batch", "4", "--sites", "k", "--no-attribution", "--out", Path.Combine(dir, "noz")).Out);

        // a narrower second run in the same folder removes the first run's plots it did not draw
        var narrow = TestPaths.Cli("patch", "--checkpoint", ckpt, "--batch", "4", "--sites", "z", "--receivers", "none", "--no-attribution");
        Assert.True(narrow.Code == 0, narrow.Err);
        var nj = JsonDocument.Parse(File.ReadAllText(Path.Combine(outDir, "patch.json"))).RootElement;
        Assert.Single(nj.GetProperty("exact").EnumerateArray());
        Assert.Equal(0, nj.GetProperty("attribution").GetArrayLength());
        Assert.Equal(0, nj.GetProperty("paths").GetArrayLength());
        Assert.Equal(nj.GetProperty("plots").EnumerateArray().Select(p => p.GetString()!).Order(), Directory.GetFiles(outDir, "*.png").Select(Path.GetFileName).Order()!);
        Directory.Delete(dir, true);
    }

    [Fact]
    public void SummaryTablesFitIn80ColumnsAndKeepEveryGrid()
    {
        var (dir, ckpt) = InductionCheckpoint("patch-verb-width");
        var r = TestPaths.Cli("patch", "--checkpoint", ckpt, "--batch", "4", "--threads", "1");
        Assert.True(r.Code == 0, r.Err);
        VerbSummaryWidth.AssertFits("patch", r.Out, dir);
        // each grid has a row in the timing/agreement table and one in the strongest-cells table
        var json = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "ind.patch", "patch.json"))).RootElement;
        foreach (var g in json.GetProperty("exact").EnumerateArray())
            Assert.Equal(2, VerbSummaryWidth.RowsStartingWith(r.Out, g.GetProperty("name").GetString()!));
        Directory.Delete(dir, true);
    }

    [Fact]
    public void SignedValuesPrintOneSign()
    {
        // direct logit attribution's parts: a small negative part once printed as "-+0.00"
        Assert.Equal("-0.00", MiniGpt.Train.Report.PatchSummary.Signed(-0.001));
        Assert.Equal("+0.00", MiniGpt.Train.Report.PatchSummary.Signed(0.004));
        Assert.Equal("+0.00", MiniGpt.Train.Report.PatchSummary.Signed(0));
        Assert.Equal("-1.24", MiniGpt.Train.Report.PatchSummary.Signed(-1.2371));
        Assert.Equal("+2.45", MiniGpt.Train.Report.PatchSummary.Signed(2.449));
        Assert.Equal("–", MiniGpt.Train.Report.PatchSummary.Signed(double.NaN));
    }

    [Fact]
    public void TextPairIsMeasuredAsADirectForwardPassMeasuresIt()
    {
        var (dir, ckpt, tok) = CharCheckpoint("patch-verb-text");
        var m = Checkpoint.Load(ckpt).Model;
        string clean = "abc xyz abc xy", corrupt = "abd xyz abd xy";
        var r = TestPaths.Cli("patch", "--checkpoint", ckpt, "--clean", clean, "--corrupt", corrupt, "--answer", "z", "--wrong", "h", "--json", "--sites", "resid_pre,z");
        Assert.True(r.Code == 0, r.Err);
        var json = JsonDocument.Parse(r.Out).RootElement;
        Assert.Equal("char", json.GetProperty("tokenizer").GetString());
        int[] cl = tok.Encode(clean, "clean"), co = tok.Encode(corrupt, "corrupt");
        int a = tok.Encode("z", "a")[0], w = tok.Encode("h", "w")[0];
        double cleanDiff = LogitDiff(m, cl, cl.Length - 1, a, w), corruptDiff = LogitDiff(m, co, co.Length - 1, a, w);
        Assert.Equal(cleanDiff, json.GetProperty("clean_metric").GetDouble(), 4);
        Assert.Equal(corruptDiff, json.GetProperty("corrupted_metric").GetDouble(), 4);

        // resid_pre at layer 0 is the embedding: patching it where the prompts differ (positions 2 and 10) turns
        // the corrupted run into the clean one at that token; where they agree, it changes nothing (0)
        var rp = Grid(json, "resid_pre").GetProperty("raw")[0].EnumerateArray().Select(e => e.GetDouble()).ToArray();
        for (int t = 0; t < cl.Length; t++)
            if (t is not (2 or 10)) Assert.True(Math.Abs(rp[t] - corruptDiff) < 1e-4, $"pos {t}: {rp[t]} vs corrupted {corruptDiff}");
        // patching position 10's embedding alone is the corrupted prompt with that one token restored
        var mixed = (int[])co.Clone();
        mixed[10] = cl[10];
        Assert.Equal(LogitDiff(m, mixed, mixed.Length - 1, a, w), rp[10], 4);

        // --sites resid_post (a site ParseSite names): layer × position; the last block's resid_post at the target's position is
        // the stream the unembedding reads there, so patching it gives the clean metric
        var post = TestPaths.Cli("patch", "--checkpoint", ckpt, "--clean", clean, "--corrupt", corrupt, "--answer", "z", "--wrong", "h", "--json",
            "--sites", "resid_post", "--receivers", "none", "--no-attribution");
        Assert.True(post.Code == 0, post.Err);
        var pg = Grid(JsonDocument.Parse(post.Out).RootElement, "resid_post");
        Assert.Equal(new[] { 2, cl.Length }, pg.GetProperty("shape").EnumerateArray().Select(e => e.GetInt32()).ToArray());
        Assert.Equal(cleanDiff, pg.GetProperty("raw")[1][cl.Length - 1].GetDouble(), 4);

        // a gap this small (an untrained model barely tells the prompts apart) or not: the warning says so exactly when it is
        bool small = Math.Abs(cleanDiff - corruptDiff) < Math.Max(0.1, 0.05 * Math.Max(Math.Abs(cleanDiff), Math.Abs(corruptDiff)));
        Assert.Equal(small ? 1 : 0, json.GetProperty("warnings").GetArrayLength());
        // identical prompts: a gap of exactly 0, which the summary warns about instead of printing grids of 0/0 as findings
        var same = TestPaths.Cli("patch", "--checkpoint", ckpt, "--clean", clean, "--corrupt", clean, "--answer", "z", "--wrong", "h",
            "--sites", "z", "--receivers", "none", "--out", Path.Combine(dir, "same"));
        Assert.True(same.Code == 0, same.Err);
        Assert.Contains("warning: the clean and corrupted metrics differ by 0.000", same.Out);
        Assert.Contains("<b>Warning:</b>", File.ReadAllText(Path.Combine(dir, "same", "patch.html")));

        // --noising: the same clean and corrupted metrics, grids measured in the clean run
        var n = TestPaths.Cli("patch", "--checkpoint", ckpt, "--clean", clean, "--corrupt", corrupt, "--answer", "z", "--wrong", "h", "--json", "--sites", "resid_pre", "--noising", "--receivers", "none");
        Assert.True(n.Code == 0, n.Err);
        var nj = JsonDocument.Parse(n.Out).RootElement;
        Assert.Equal("noising", nj.GetProperty("direction").GetString());
        Assert.Equal(cleanDiff, nj.GetProperty("clean_metric").GetDouble(), 4);
        Assert.NotEqual(json.GetProperty("normalisation").GetString(), nj.GetProperty("normalisation").GetString());
        var np = Grid(nj, "resid_pre").GetProperty("raw")[0].EnumerateArray().Select(e => e.GetDouble()).ToArray();
        var broken = (int[])cl.Clone();
        broken[10] = co[10];
        Assert.Equal(LogitDiff(m, broken, broken.Length - 1, a, w), np[10], 4);
        Assert.True(Math.Abs(np[0] - cleanDiff) < 1e-4, $"noising pos 0: {np[0]} vs clean {cleanDiff}");
        Directory.Delete(dir, true);
    }

    [Fact]
    public void NoisingLabelsEveryGridWithThePairsOwnCleanAndCorruptedRuns()
    {
        var (dir, ckpt) = InductionCheckpoint("patch-verb-noising");
        string outDir = Path.Combine(dir, "n");
        var r = TestPaths.Cli("patch", "--checkpoint", ckpt, "--batch", "2", "--threads", "1", "--sites", "z,k", "--receivers", "1.0", "--noising", "--out", outDir);
        Assert.True(r.Code == 0, r.Err);
        var json = JsonDocument.Parse(File.ReadAllText(Path.Combine(outDir, "patch.json"))).RootElement;
        double clean = json.GetProperty("clean_metric").GetDouble(), corrupted = json.GetProperty("corrupted_metric").GetDouble();
        Assert.True(Math.Abs(clean - corrupted) > 1e-6, "the runs must differ, or swapped labels would not show");
        // the pairs' clean prompts, run alone, give clean_metric (so it is not the swapped run's)
        var m = Checkpoint.Load(ckpt).Model;
        var p = MiniGpt.Patching.PatchPrompts.Induction(m.Config.DVocab, 2, 6, 1);
        Assert.Equal(MiniGpt.Patching.ActivationPatching.Metric(m, p.Clean, p, MiniGpt.Patching.PatchMetric.LogitDiff), clean, 4);
        // every grid, exact, attributed and path, names the same two runs as the top level
        var grids = json.GetProperty("exact").EnumerateArray().Concat(json.GetProperty("attribution").EnumerateArray())
            .Concat(json.GetProperty("paths").EnumerateArray().Select(x => x.GetProperty("grid"))).ToList();
        Assert.Equal(2 + 2 + 3, grids.Count);
        foreach (var g in grids)
        {
            Assert.Equal(clean, g.GetProperty("clean").GetDouble());
            Assert.Equal(corrupted, g.GetProperty("corrupted").GetDouble());
        }
        // the captions say which run is patched into which
        string html = File.ReadAllText(Path.Combine(outDir, "patch.html"));
        Assert.Contains("its corrupted output reaching L1H0 only through its q, k or v input (every other path frozen at the clean run); 0 = clean run, 1 = corrupted run", html);
        Assert.DoesNotContain("clean output reaching", html);
        Assert.Contains("attribution (all grids)", html);
        Assert.DoesNotContain("0 = corrupted run, 1 = clean run", html);
        Directory.Delete(dir, true);
    }

    [Fact]
    public void PairsFileRunsEveryLineAndNamesTheLineOfAMistake()
    {
        var (dir, ckpt, tok) = CharCheckpoint("patch-verb-pairs");
        var m = Checkpoint.Load(ckpt).Model;
        string pairs = Path.Combine(dir, "pairs.jsonl");
        File.WriteAllLines(pairs, [
            "# made-up word induction",
            """{"clean": "abc xyz abc", "corrupt": "abd xyz abd", "answer": " ", "wrong": "h"}""",
            "",
            """{"clean": "fgh xyz. fgh", "corrupt": "fge xyz. fge", "answer": " ", "wrong": "a", "position": -1}""",
        ]);
        var r = TestPaths.Cli("patch", "--checkpoint", ckpt, "--pairs", pairs, "--json", "--sites", "z", "--no-attribution");
        Assert.True(r.Code == 0, r.Err);
        var json = JsonDocument.Parse(r.Out).RootElement;
        Assert.Equal(2, json.GetProperty("prompts").GetProperty("batch").GetInt32());
        Assert.Contains("11–12 tokens right-padded to 12", json.GetProperty("prompts").GetProperty("description").GetString());
        // the shorter pair is right-padded; causal attention keeps the padding out of its target, so the
        // clean metric is the mean of the two prompts' logit differences, each run alone at its own length
        int space = tok.Encode(" ", "s")[0];
        int[] p0 = tok.Encode("abc xyz abc", "p0"), p1 = tok.Encode("fgh xyz. fgh", "p1");
        double expected = (LogitDiff(m, p0, p0.Length - 1, space, tok.Encode("h", "h")[0]) + LogitDiff(m, p1, p1.Length - 1, space, tok.Encode("a", "a")[0])) / 2;
        Assert.Equal(expected, json.GetProperty("clean_metric").GetDouble(), 4);
        // each pair is written as given, its length beside it, not with the padding that fits it into the batch
        var jp = json.GetProperty("prompts").GetProperty("pairs");
        Assert.Equal(new[] { 11, 12 }, jp.EnumerateArray().Select(x => x.GetProperty("length").GetInt32()).ToArray());
        Assert.Equal(p0, jp[0].GetProperty("clean").EnumerateArray().Select(x => x.GetInt32()).ToArray());
        // positions are labelled with pair 0's tokens, and pair 0 (the short one) has none at position 11: "pad", not token 0
        var prompts = new MiniGpt.Train.PatchInputs(tok, m.Config).File(pairs);
        var text = new TokenText(tok);
        Assert.Equal("c", MiniGpt.Train.Report.PatchCells.PositionLabel(prompts, text, 10)); // "abc xyz abc"[10]
        Assert.Equal("pad", MiniGpt.Train.Report.PatchCells.PositionLabel(prompts, text, 11));
        var grid = new MiniGpt.Patching.PatchGrid("resid_pre", "exact", ["layer", "pos"], [2, 12], new double[24], new double[24], 1, 0, 0);
        Assert.Equal("L1 pos 11 pad", MiniGpt.Train.Report.PatchCells.Name(grid, 23, prompts, text));
        Assert.Equal("L1 pos 0 'a'", MiniGpt.Train.Report.PatchCells.Name(grid, 12, prompts, text));

        void Bad(string line, string fragment)
        {
            File.WriteAllLines(pairs, ["""{"clean": "abc", "corrupt": "abd", "answer": "a", "wrong": "h"}""", line]);
            TestPaths.AssertOneLineError(TestPaths.Cli("patch", "--checkpoint", ckpt, "--pairs", pairs), 1, fragment);
        }
        Bad("{\"clean\": \"abc\"", "pairs.jsonl line 2 is not valid JSON");
        Bad("""{"clean": "abc", "corrupt": "abd", "answer": "a", "wrong": "h", "pos": 1}""", "line 2: unknown key 'pos'");
        Bad("""{"clean": "abc", "clean": "abd", "corrupt": "abd", "answer": "a", "wrong": "h"}""", "pairs.jsonl line 2 is not valid JSON");
        Bad("""{"clean": "abc", "corrupt": "abd", "answer": "a", "wrong": "h", "wrong": "h"}""", "each key once");
        Bad("""{"clean": "abc", "corrupt": "abd", "answer": "a"}""", "line 2: wrong is missing");
        Bad("""{"clean": "abc", "corrupt": "abd", "answer": "ab", "wrong": "h"}""", "is 2 tokens");
        Bad("""{"clean": "abc", "corrupt": "abd", "answer": "a", "wrong": "h", "position": 7}""", "position 7 is outside");
        Bad("""{"clean": "abcd", "corrupt": "abd", "answer": "a", "wrong": "h"}""", "of pair 1 is 4 tokens and the corrupted one 3");
        TestPaths.AssertOneLineError(TestPaths.Cli("patch", "--checkpoint", ckpt, "--pairs", Path.Combine(dir, "none.jsonl")), 1, "does not exist");
        Directory.Delete(dir, true);
    }

    [Fact]
    public void BadInputIsAOneLineErrorAndWritesNothing()
    {
        var (dir, ckpt, _) = CharCheckpoint("patch-verb-errors");
        string[] pair = ["--checkpoint", ckpt, "--clean", "abc", "--corrupt", "abd", "--answer", "a", "--wrong", "h"];
        string[] Args(params string[] more) => ["patch", .. pair, .. more];
        TestPaths.AssertOneLineError(TestPaths.Cli("patch", "--checkpoint", ckpt), 2, "was trained on text");
        TestPaths.AssertOneLineError(TestPaths.Cli("patch", "--checkpoint", ckpt, "--clean", "abc", "--corrupt", "abd", "--answer", "a"), 2, "--wrong is missing");
        TestPaths.AssertOneLineError(TestPaths.Cli("patch", "--checkpoint", ckpt, "--clean", "abc", "--corrupt", "abcd", "--answer", "a", "--wrong", "h"), 1, "is 3 tokens and the corrupted one 4");
        TestPaths.AssertOneLineError(TestPaths.Cli("patch", "--checkpoint", ckpt, "--clean", "abc", "--corrupt", "abd", "--answer", "ab", "--wrong", "h"), 1, "give a single token");
        TestPaths.AssertOneLineError(TestPaths.Cli("patch", "--checkpoint", ckpt, "--clean", "abc", "--corrupt", "abd", "--answer", "a", "--wrong", "a"), 1, "are the same token");
        TestPaths.AssertOneLineError(TestPaths.Cli("patch", "--checkpoint", ckpt, "--clean", "abc", "--corrupt", "abQ", "--answer", "a", "--wrong", "h"), 1, "Q");
        TestPaths.AssertOneLineError(TestPaths.Cli(Args("--sites", "resid_pre,mlp_in")), 2, "unknown site 'mlp_in'");
        TestPaths.AssertOneLineError(TestPaths.Cli(Args("--sites", "resid_post_by_pos")), 2, "use resid_pre, attn_out, mlp_out, resid_post, z");
        TestPaths.AssertOneLineError(TestPaths.Cli(Args("--receivers", "1.7")), 1, "L1H7 does not exist");
        TestPaths.AssertOneLineError(TestPaths.Cli(Args("--receivers", "0.1")), 1, "is in layer 0");
        TestPaths.AssertOneLineError(TestPaths.Cli(Args("--receivers", "one")), 2, "--receivers");
        TestPaths.AssertOneLineError(TestPaths.Cli(Args("--no-exact", "--no-attribution", "--receivers", "none")), 2, "leave nothing to patch");
        TestPaths.AssertOneLineError(TestPaths.Cli(Args("--no-exact", "--no-attribution")), 2, "name the receivers");
        TestPaths.AssertOneLineError(TestPaths.Cli(Args("--metric", "accuracy")), 2, "--metric 'accuracy' is not a metric");
        TestPaths.AssertOneLineError(TestPaths.Cli(Args("--batch", "4")), 2, "--batch sets the induction task's pairs");
        TestPaths.AssertOneLineError(TestPaths.Cli(Args("--task", "induction")), 2, "give one source of pairs");
        TestPaths.AssertOneLineError(TestPaths.Cli("patch", "--checkpoint", ckpt, "--task", "ioi"), 2, "--task 'ioi' is not a task");
        TestPaths.AssertOneLineError(TestPaths.Cli("patch", "--checkpoint", ckpt, "--task", "induction", "--half", "1"), 1, "--half 1");
        TestPaths.AssertOneLineError(TestPaths.Cli("patch", "--checkpoint", ckpt, "--task", "induction", "--half", "9"), 1, "n_ctx = 16");
        File.WriteAllText(Path.Combine(dir, "file"), "x");
        TestPaths.AssertOneLineError(TestPaths.Cli(Args("--out", Path.Combine(dir, "file"))), 1, "is a file");
        Assert.Equal("x", File.ReadAllText(Path.Combine(dir, "file")));
        TestPaths.AssertOneLineError(TestPaths.Cli("patch", "--checkpoint", Path.Combine(dir, "none.safetensors")), 1, "none.safetensors");
        TestPaths.AssertOneLineError(TestPaths.Cli(Args("--out", "")), 2, "--out is empty");
        TestPaths.AssertOneLineError(TestPaths.Cli("circuits", "--checkpoint", ckpt, "--out", " "), 2, "--out is empty");
        // a folder that cannot be made (under a file): reported by the check made before the analysis, with nothing printed
        // by the analysis, and the file left as it was
        var under = TestPaths.Cli(Args("--out", Path.Combine(dir, "file", "sub")));
        TestPaths.AssertOneLineError(under, 1, "cannot hold the report");
        Assert.Equal("", under.Out);
        Assert.Equal("x", File.ReadAllText(Path.Combine(dir, "file")));
        // none of the mistakes above wrote a report
        Assert.False(Directory.Exists(Path.Combine(dir, "char.patch")));

        var (zdir, zero) = InductionCheckpoint("patch-verb-zero", layers: 0);
        TestPaths.AssertOneLineError(TestPaths.Cli("patch", "--checkpoint", zero), 1, "zero-layer model");
        Directory.Delete(zdir, true);
        Directory.Delete(dir, true);
    }

    [Fact]
    public void CircuitsOfAnInductionModelAddsNoisingPatchingUnlessToldNot()
    {
        var (dir, ckpt) = InductionCheckpoint("patch-verb-circuits");
        var r = TestPaths.Cli("circuits", "--checkpoint", ckpt, "--batches", "1", "--out", Path.Combine(dir, "c"));
        Assert.True(r.Code == 0, r.Err);
        var json = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "c", "circuits.json"))).RootElement;
        Assert.Contains($"noising patching of {MiniGpt.Train.Report.PatchInCircuits.Batch} pairs (1 = that site alone breaks the behaviour): z L", r.Out);
        var patching = json.GetProperty("patching");
        Assert.Equal("noising", patching.GetProperty("direction").GetString());
        Assert.DoesNotContain(patching.GetProperty("exact").EnumerateArray(), g => g.GetProperty("name").GetString() is "z_by_pos" or "attn_out");
        foreach (var p in patching.GetProperty("plots").EnumerateArray())
            Assert.True(File.Exists(Path.Combine(dir, "c", p.GetString()!)), p.GetString());
        Assert.Contains("patching", File.ReadAllText(Path.Combine(dir, "c", "report.html")), StringComparison.OrdinalIgnoreCase);

        // --patching=false leaves it out, and removes the earlier run's patch plots from the folder
        var off = TestPaths.Cli("circuits", "--checkpoint", ckpt, "--batches", "1", "--out", Path.Combine(dir, "c"), "--patching=false");
        Assert.True(off.Code == 0, off.Err);
        Assert.False(JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "c", "circuits.json"))).RootElement.TryGetProperty("patching", out _));
        Assert.DoesNotContain("noising patching", off.Out);
        Assert.Empty(Directory.GetFiles(Path.Combine(dir, "c"), "patch_*.png"));

        // a text model's circuits cannot patch the induction pairs: asked to, it says so
        var (tdir, text, _) = CharCheckpoint("patch-verb-circuits-text");
        File.WriteAllText(Path.Combine(tdir, "t.txt"), string.Concat(Enumerable.Repeat("abc xyz. ", 50)));
        TestPaths.AssertOneLineError(TestPaths.Cli("circuits", "--checkpoint", text, "--data", Path.Combine(tdir, "t.txt"), "--patching"), 1, "give the pairs to the patch verb");
        Directory.Delete(tdir, true);
        Directory.Delete(dir, true);
    }
}
