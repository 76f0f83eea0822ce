using MiniGpt.Model;
using MiniGpt.Tensors;
using Xunit;

namespace MiniGpt.Tests;

/// <summary>
/// A tensor's debugger line (name, shape, min, max, mean, NaN and ±∞ counts, sampled above 4 M values) and its expansion
/// (rows along the leading dimension, per-head slices of attention tensors): the same plain C# the debugger calls.
/// </summary>
public class TensorDebugViewTests
{
    private static GptModel RanModel(int B, int T)
    {
        var cfg = new ModelConfig { NLayers = 1, DModel = 16, NHeads = 2, DHead = 8, NCtx = 16, DVocab = 11, AttnOnly = true };
        var m = GptModel.Create(cfg, 4);
        m.KeepPatterns = true;
        var r = new Random(2);
        m.Forward(Enumerable.Range(0, B * T).Select(_ => r.Next(11)).ToArray(), default, B, T);
        return m;
    }

    [Fact]
    public void TheLineOfAPatternGivesShapeRangeMeanAndTheMaskedScoresCountAsMinusInfinity()
    {
        const int B = 1, T = 8, H = 2;
        var m = RanModel(B, T);
        var p = m.Cache!.Acts["blocks.0.attn.hook_pattern"];
        // each causal row sums to 1, so the mean over the [T, T] matrix is T / T² = 1/T; zeros above the diagonal make min 0
        Assert.StartsWith("blocks.0.attn.hook_pattern [1, 2, 8, 8] min 0 max ", p.DebuggerText);
        Assert.Contains($"mean {1.0 / T:G4} NaN 0 Inf 0", p.DebuggerText);
        var s = new TensorStats(m.Cache.Acts["blocks.0.attn.hook_attn_scores"].Span);
        Assert.Equal(B * H * T * (T - 1) / 2, s.NegInf); // the causal mask, above the diagonal
        Assert.Equal(0, s.NaN);
        Assert.Contains($"−Inf {B * H * T * (T - 1) / 2}", s.ToString());
    }

    [Fact]
    public void StatsCountNaNAndInfinitiesAndSkipThemInMinMaxMean()
    {
        var t = new Tensor("x", [1f, -2f, float.NaN, 4f, float.PositiveInfinity, float.NegativeInfinity, float.NaN, 3f], 0, 2, 4);
        var s = new TensorStats(t.Span);
        Assert.Equal((2, 1, 1, 4), (s.NaN, s.PosInf, s.NegInf, s.Finite));
        Assert.Equal((-2f, 4f), (s.Min, s.Max));
        Assert.Equal((1 - 2 + 4 + 3) / 4.0, s.Mean);
        Assert.Equal("x [2, 4] min -2 max 4 mean 1.5 NaN 2 +Inf 1 −Inf 1", t.DebuggerText);
        Assert.Equal("no finite values NaN 1 Inf 0", new TensorStats([float.NaN]).ToString());
    }

    [Fact]
    public void ALargeTensorIsSampledWithinTheBoundAndSaysSo()
    {
        int n = 2 * TensorStats.MaxExamined + 1;
        var buf = new float[n];
        for (int i = 0; i < n; i++) buf[i] = i % 3 == 0 ? 1f : 7f; // every third value (the sampled ones, stride 3) is 1
        var s = new TensorStats(buf);
        Assert.True(s.Sampled);
        Assert.Equal(3, s.Stride);
        Assert.True(s.Examined <= TensorStats.MaxExamined, $"{s.Examined} values read");
        Assert.Equal((1f, 1f), (s.Min, s.Max));
        Assert.Contains($"sampled: 1 in 3 of {n:N0}", s.ToString());
        Assert.False(new TensorStats(buf.AsSpan(0, TensorStats.MaxExamined)).Sampled);
    }

    [Fact]
    public void RowsAreTheLeadingDimensionSlicesAndExpandAgain()
    {
        var t = new Tensor("a", Enumerable.Range(0, 24).Select(i => (float)i).ToArray(), 0, 2, 3, 4);
        var rows = new TensorDebugView(t).Rows!;
        Assert.Equal(2, rows.Length);
        Assert.Equal("a[1]", rows[1].Name);
        Assert.Equal([3, 4], rows[1].Shape);
        var inner = new TensorDebugView(rows[1]).Rows!;
        Assert.Equal([4], inner[2].Shape);
        // a[1][2] is [1·12 + 2·4, …] = [20, 21, 22, 23]
        Assert.Equal([20f, 21f, 22f, 23f], new TensorDebugView(inner[2]).Values!);
        Assert.Null(new TensorDebugView(inner[2]).Rows);
        Assert.Null(new TensorDebugView(t).Values);
        var big = Tensor.Zeros("big", 1000, 2);
        Assert.Equal(TensorDebugView.MaxItems, new TensorDebugView(big).Rows!.Length);
    }

    [Fact]
    public void HeadsArePerHeadSlicesOfPatternsAndOfQueries()
    {
        const int B = 2, T = 5, H = 2, dh = 8;
        var m = RanModel(B, T);
        var p = m.Cache!.Acts["blocks.0.attn.hook_pattern"];
        var q = m.Cache.Acts["blocks.0.attn.hook_q"];
        var ph = new TensorDebugView(p).Heads!;
        var qh = new TensorDebugView(q).Heads!;
        Assert.Equal(H, ph.Length);
        Assert.Equal([B, T, T], ph[1].Shape);
        Assert.Equal([B, T, dh], qh[1].Shape);
        Assert.Equal("blocks.0.attn.hook_q head 1", qh[1].Name);
        var ps = p.Span; var qs = q.Span;
        for (int h = 0; h < H; h++)
            for (int b = 0; b < B; b++)
                for (int i = 0; i < T; i++)
                {
                    for (int j = 0; j < T; j++) Assert.Equal(ps[b * H * T * T + h * T * T + i * T + j], ph[h].Span[(b * T + i) * T + j]);
                    for (int d = 0; d < dh; d++) Assert.Equal(qs[b * T * H * dh + i * H * dh + h * dh + d], qh[h].Span[(b * T + i) * dh + d]);
                }
        // one sequence: a head's pattern is the [T, T] matrix itself
        var one = RanModel(1, T).Cache!.Acts["blocks.0.attn.hook_pattern"];
        Assert.Equal([T, T], new TensorDebugView(one).Heads![0].Shape);
        Assert.Null(new TensorDebugView(m.Cache.Acts["blocks.0.hook_resid_pre"]).Heads);
    }

    [Fact]
    public void AQueryWithAsManyHeadsAsDimensionsPerHeadIsStillSplitByHead()
    {
        // [B, T, H, d_head] with H = d_head: the shape alone reads like [B, H, T, T]; the name (a Backward's capture "q") decides
        const int B = 1, T = 3, H = 4, dh = 4;
        var data = Enumerable.Range(0, B * T * H * dh).Select(i => (float)i).ToArray();
        foreach (string name in new[] { "q", "dq", "blocks.0.attn.hook_q" })
        {
            var heads = new TensorDebugView(new Tensor(name, data, 0, B, T, H, dh)).Heads!;
            Assert.Equal(H, heads.Length);
            Assert.Equal([T, dh], heads[1].Shape);
            for (int i = 0; i < T; i++)
                for (int d = 0; d < dh; d++) Assert.Equal(data[i * H * dh + 1 * dh + d], heads[1].Span[i * dh + d]);
        }
    }
}
