using MiniGpt.Layers;
using MiniGpt.Tensors;
using Xunit;

namespace MiniGpt.Tests;

/// <summary>
/// The parallel row-wise kernels (LayerNorm, cross-entropy, bias add, bias-gradient row sums, residual add)
/// against their serial references, at sizes below and above the parallel threshold, and on 1, 2 and 3 threads.
/// All are bitwise the reference except LayerNorm's dw/db, which sum fixed row chunks and then the chunks.
/// </summary>
public class RowKernelTests
{
    private static float[] Random(int n, int seed, float scale = 1)
    {
        var r = new Random(seed);
        var a = new float[n];
        for (int i = 0; i < n; i++) a[i] = (float)(r.NextDouble() * 2 - 1) * scale;
        return a;
    }

    // runs f with the fast or the reference kernel set on a pool of the given size
    private static T WithFast<T>(bool fast, int threads, Func<IKernels, T> f)
    {
        using var pool = new WorkerPool(threads);
        WorkerPool.UseOnThisThread(pool);
        try { return f(fast ? Kernels.Fast : Kernels.Reference); }
        finally { WorkerPool.UseOnThisThread(null); }
    }

    public static TheoryData<int, int> Shapes() => new() { { 1, 7 }, { 5, 33 }, { 300, 65 }, { 1000, 256 }, { 2048, 129 } };

    private static float[] LayerNormRun(bool fast, int threads, int N, int C, bool affine)
    {
        var x = Random(N * C, 1, 3); var dy = Random(N * C, 2);
        var w = affine ? Random(C, 3) : []; var b = affine ? Random(C, 4) : [];
        var y = new float[N * C]; var mean = new float[N]; var rstd = new float[N];
        var dx = Random(N * C, 5); var dw = affine ? Random(C, 6) : []; var db = affine ? Random(C, 7) : [];
        var xhat = new float[C]; var g = new float[C];
        return WithFast(fast, threads, k =>
        {
            k.LayerNormForward(x, w, b, y, mean, rstd, N, C);
            k.LayerNormBackward(x, w, mean, rstd, dy, dx, dw, db, xhat, g, N, C);
            return y.Concat(mean).Concat(rstd).Concat(dx).Concat(dw).Concat(db).ToArray();
        });
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void LayerNormMatchesReference(int N, int C)
    {
        foreach (bool affine in new[] { true, false })
        {
            var r = LayerNormRun(false, 1, N, C, affine);
            var f = LayerNormRun(true, 2, N, C, affine);
            int rowsPart = 2 * N * C + 2 * N; // y, mean, rstd, dx: the same row code, so the same bits
            Assert.Equal(r[..rowsPart], f[..rowsPart]);
            for (int i = rowsPart; i < r.Length; i++) // dw, db: summed in chunks
                Assert.True(Math.Abs(r[i] - f[i]) <= 1e-5f * (1 + Math.Sqrt(N)) * (1 + Math.Abs(r[i])), $"dw/db[{i - rowsPart}]: fast {f[i]} vs reference {r[i]}");
        }
    }

    [Fact]
    public void LayerNormIsBitwiseIdenticalForAnyThreadCount()
    {
        var one = LayerNormRun(true, 1, 2048, 129, affine: true);
        Assert.Equal(one, LayerNormRun(true, 2, 2048, 129, affine: true));
        Assert.Equal(one, LayerNormRun(true, 3, 2048, 129, affine: true));
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void CrossEntropyIsBitwiseTheReference(int N, int V)
    {
        var logits = Random(N * V, 1, 4);
        var r = new System.Random(2);
        var targets = Enumerable.Range(0, N).Select(_ => r.Next(V)).ToArray();
        (double, float[]) Run(bool fast, int threads) => WithFast(fast, threads, k =>
        {
            var losses = new float[N];
            var d = new float[N * V];
            double total = k.CrossEntropyForward(logits, targets, losses, N, V);
            k.CrossEntropyBackward(logits, targets, d, 1f / N, N, V);
            return (total, losses.Concat(d).ToArray());
        });
        var reference = Run(false, 1);
        foreach (int threads in new[] { 1, 2, 3 })
        {
            var fast = Run(true, threads);
            Assert.Equal(reference.Item1, fast.Item1);
            Assert.Equal(reference.Item2, fast.Item2);
        }
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void BiasAddRowSumsAndResidualAddAreBitwiseTheReference(int N, int C)
    {
        var m = Random(N * C, 1); var bias = Random(C, 2); var acc0 = Random(C, 3); var other = Random(N * C, 4);
        float[] Run(bool fast, int threads) => WithFast(fast, threads, k =>
        {
            var acc = (float[])acc0.Clone();
            var y = (float[])m.Clone();
            var sum = new float[N * C];
            k.SumRows(m, acc, N, C);
            k.AddBias(y, bias, N, C);
            k.Add(m, other, sum);
            return acc.Concat(y).Concat(sum).ToArray();
        });
        var reference = Run(false, 1);
        foreach (int threads in new[] { 1, 2, 3 }) Assert.Equal(reference, Run(true, threads));
    }
}
