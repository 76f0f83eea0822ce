using System.Text.Json;
using MiniGpt.Checkpoints;
using MiniGpt.Circuits;
using MiniGpt.Data;
using MiniGpt.Model;
using MiniGpt.Train.Report;
using Xunit;

namespace MiniGpt.Tests;

/// <summary>
/// circuits on a model with more heads than a table can show (3 layers × 12 heads = 36 &gt; NotableHeads.AllUpTo):
/// the summary lists the notable heads and counts the rest, the notable heads are exactly those with a role and
/// each score's top 3, only they are ablated unless asked, and the report maps every score over [layer × head].
/// </summary>
public class WideCircuitsTests
{
    private const int Layers = 3, Heads = 12;

    private static string Checkpoint(string dir)
    {
        var cfg = new ModelConfig { NLayers = Layers, DModel = 48, NHeads = Heads, DHead = 4, DMlp = 96, NCtx = 16, DVocab = 40, AttnOnly = false };
        string ckpt = Path.Combine(dir, "wide.safetensors");
        MiniGpt.Checkpoints.Checkpoint.Save(ckpt, GptModel.Create(cfg, 5), null);
        return ckpt;
    }

    [Fact]
    public void AWideModelsReportShowsItsNotableHeadsAndMapsEveryScore()
    {
        string dir = TestPaths.TempDir("circuits-wide");
        string ckpt = Checkpoint(dir), outDir = Path.Combine(dir, "report");
        var r = TestPaths.Cli("circuits", "--checkpoint", ckpt, "--out", outDir, "--batches", "1", "--patching=false");
        Assert.True(r.Code == 0, r.Err);
        var json = JsonDocument.Parse(File.ReadAllText(Path.Combine(outDir, "circuits.json"))).RootElement;
        var heads = json.GetProperty("heads").EnumerateArray().ToList();
        Assert.Equal(Layers * Heads, heads.Count);

        // the notable heads, recomputed from the JSON's scores and roles: roles first, then each score's top 3
        var scores = HeadScoreSet.Default;
        double Value(string s, int l, int h) => heads[l * Heads + h].GetProperty(s).GetDouble();
        string[] Roles(int l, int h) => heads[l * Heads + h].GetProperty("roles").EnumerateArray().Select(x => x.GetString()!).ToArray();
        var expected = new HashSet<string>();
        foreach (var s in scores)
            foreach (var x in Enumerable.Range(0, Layers * Heads).OrderByDescending(i => Value(s.Name, i / Heads, i % Heads)).Take(NotableHeads.TopPerScore))
                expected.Add($"L{x / Heads}H{x % Heads}");
        for (int i = 0; i < Layers * Heads; i++)
            if (Roles(i / Heads, i % Heads).Length > 0) expected.Add($"L{i / Heads}H{i % Heads}");
        var ablatedNames = heads.Where(h => h.GetProperty("ablation").ValueKind != JsonValueKind.Null).Select(h => h.GetProperty("name").GetString()!).ToHashSet();
        Assert.True(expected.Count is > 0 and < Layers * Heads, $"{expected.Count} notable heads");
        Assert.Equal(expected.Order(), ablatedNames.Order());

        // the table: one line per notable head (plus at most the top ablation effects), the rest counted
        // (two tables, or more when the score columns need more than 80 columns: each lists the same heads in the same order)
        var tables = r.Out.Replace("\r", "").Split("\n\n").Select(t => t.Split('\n').Where(l => System.Text.RegularExpressions.Regex.IsMatch(l, @"^L\d+H\d+ ")).ToList())
            .Where(t => t.Count > 0).ToList();
        var shown = json.GetProperty("shown_heads").EnumerateArray().Select(x => x.GetString()!).ToList();
        Assert.True(tables.Count >= 2, $"{tables.Count} head tables");
        Assert.All(tables, rows => Assert.Equal(shown, rows.Select(l => l.Split(' ')[0]).ToList()));
        Assert.True(expected.IsSubsetOf(shown) && shown.Count <= NotableHeads.Max, $"shown {string.Join(",", shown)}");
        Assert.Contains($"… and {Layers * Heads - shown.Count} more heads", r.Out);
        Assert.Contains($"{ablatedNames.Count} of the {Layers * Heads} heads were ablated", r.Out);

        // one ablation, checked against a direct measurement with that head zeroed
        var loaded = MiniGpt.Checkpoints.Checkpoint.Load(ckpt);
        var data = EvalData.Open("induction", loaded, MiniGpt.Train.CircuitsVerb.DefaultBatchSize(16), 1);
        string first = ablatedNames.Order().First();
        int fl = first[1] - '0', fh = int.Parse(first[(first.IndexOf('H') + 1)..]);
        var direct = HeadAblation.Measure(loaded.Model, data, [(fl, fh)]);
        Assert.Equal(direct.Repeat, heads[fl * Heads + fh].GetProperty("ablation").GetProperty("losses").GetProperty("repeat_half").GetDouble(), 9);

        // plots: a [layer × head] map per score, eigenvalue plots only for the shown heads, all embedded
        var plots = json.GetProperty("plots").EnumerateArray().Select(p => p.GetString()!).ToList();
        foreach (var s in scores) Assert.Contains($"heads_{s.Name}.png", plots);
        Assert.Contains("heads_ablation.png", plots);
        Assert.Equal(shown.Select(n => $"eigenvalues_{n}.png").Order(), plots.Where(p => p.StartsWith("eigenvalues_", StringComparison.Ordinal)).Order());
        string html = File.ReadAllText(Path.Combine(outDir, "report.html"));
        foreach (string p in plots)
            Assert.Contains($"src=\"data:image/png;base64,{Convert.ToBase64String(File.ReadAllBytes(Path.Combine(outDir, p)))}\"", html);
        Assert.Contains($"<details><summary>All {Layers * Heads} heads</summary>", html);
        foreach (var h in heads) Assert.Contains($"<b>{h.GetProperty("name").GetString()}</b>", html);

        // --all-heads lists them all; --ablate all ablates them all; --ablate none and a list do as told
        var all = TestPaths.Cli("circuits", "--checkpoint", ckpt, "--out", Path.Combine(dir, "all"), "--batches", "1", "--patching=false", "--all-heads", "--ablate", "all", "--json");
        Assert.True(all.Code == 0, all.Err);
        var allJson = JsonDocument.Parse(all.Out).RootElement.GetProperty("heads").EnumerateArray().ToList();
        Assert.All(allJson, h => Assert.NotEqual(JsonValueKind.Null, h.GetProperty("ablation").ValueKind));
        Assert.Equal(direct.Repeat, allJson[fl * Heads + fh].GetProperty("ablation").GetProperty("losses").GetProperty("repeat_half").GetDouble(), 9);
        var listed = TestPaths.Cli("circuits", "--checkpoint", ckpt, "--out", Path.Combine(dir, "two"), "--batches", "1", "--patching=false", "--all-heads", "--ablate", "2.11,0.0");
        Assert.True(listed.Code == 0, listed.Err);
        Assert.Equal(Layers * Heads, listed.Out.Split('\n').Where(l => System.Text.RegularExpressions.Regex.IsMatch(l, @"^L\d+H\d+ ")).Select(l => l.Split(' ')[0]).Distinct().Count());
        var twoJson = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "two", "circuits.json"))).RootElement.GetProperty("heads").EnumerateArray().ToList();
        Assert.Equal(["L0H0", "L2H11"], twoJson.Where(h => h.GetProperty("ablation").ValueKind != JsonValueKind.Null).Select(h => h.GetProperty("name").GetString()!).Order().ToArray());
        Assert.Contains("2 of 36 heads were ablated one at a time, as asked", listed.Out);
        var none = TestPaths.Cli("circuits", "--checkpoint", ckpt, "--out", Path.Combine(dir, "none"), "--batches", "1", "--patching=false", "--ablate", "none");
        Assert.True(none.Code == 0, none.Err);
        var noneJson = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "none", "circuits.json"))).RootElement;
        Assert.All(noneJson.GetProperty("heads").EnumerateArray(), h => Assert.Equal(JsonValueKind.Null, h.GetProperty("ablation").ValueKind));
        Assert.DoesNotContain("NaN", none.Out); // no headline or group line made of losses nobody measured
        Assert.Contains("0 of 36 heads were ablated one at a time, as asked", none.Out);
        TestPaths.AssertOneLineError(TestPaths.Cli("circuits", "--checkpoint", ckpt, "--ablate", "3.0"), 1, "--ablate: L3H0 does not exist");
        TestPaths.AssertOneLineError(TestPaths.Cli("circuits", "--checkpoint", ckpt, "--ablate", "some"), 2, "--ablate expects layer.head pairs");
        Directory.Delete(dir, true);
    }
}
