using CommunityToolkit.HighPerformance;
using MiniGpt.Layers;
using MiniGpt.Tensors;
using Xunit;

namespace MiniGpt.Tests;

/// <summary>
/// The SIMD matmul against the scalar reference: every form, both modes, edge shapes (widths that are
/// not whole vectors, rows that are not whole micro-kernels, k past one k-block, sizes that go parallel),
/// strided views, thread-count independence and shape checks.
/// </summary>
public class MatMulTests
{
    public enum Form { NN, NT, TN }

    public static TheoryData<Form, bool> FormsAndModes()
    {
        var d = new TheoryData<Form, bool>();
        foreach (var f in new[] { Form.NN, Form.NT, Form.TN })
        {
            d.Add(f, false);
            d.Add(f, true);
        }
        return d;
    }

    private static void Multiply(IMatMul mm, Form form, ReadOnlySpan2D<float> a, ReadOnlySpan2D<float> b, Span2D<float> c, bool accumulate)
    {
        switch (form)
        {
            case Form.NN: mm.NN(a, b, c, accumulate); break;
            case Form.NT: mm.NT(a, b, c, accumulate); break;
            default: mm.TN(a, b, c, accumulate); break;
        }
    }

    // C is [m, n]; A is [m, k] (NN, NT) or [k, m] (TN); B is [k, n] (NN, TN) or [n, k] (NT)
    private static (int Rows, int Cols) ShapeA(Form f, int m, int k) => f == Form.TN ? (k, m) : (m, k);
    private static (int Rows, int Cols) ShapeB(Form f, int n, int k) => f == Form.NT ? (n, k) : (k, n);

    private static ReadOnlySpan2D<float> RO(float[] d, int rows, int cols) => Views.Mat((ReadOnlySpan<float>)d, rows, cols);
    private static Span2D<float> RW(float[] d, int rows, int cols) => Views.Mat(d.AsSpan(), rows, cols);

    /// <summary>A [Rows, Cols] matrix at column Col of a [Rows, Stride] buffer; Col = 0 and Stride = Cols is dense.</summary>
    private sealed class Strided
    {
        public readonly float[] Data;
        public readonly int Rows, Cols, Stride, Col;

        private Strided(float[] data, int rows, int cols, int stride, int col)
        {
            Data = data; Rows = rows; Cols = cols; Stride = stride; Col = col;
        }

        public static Strided Random(ref Rng rng, int rows, int cols, int left, int right)
        {
            var s = new Strided(new float[rows * (left + cols + right)], rows, cols, left + cols + right, left);
            for (int i = 0; i < s.Data.Length; i++) s.Data[i] = (float)(2 * rng.NextDouble() - 1);
            return s;
        }

        public Strided Copy() => new((float[])Data.Clone(), Rows, Cols, Stride, Col);

        public Strided Abs() => new(Data.Select(MathF.Abs).ToArray(), Rows, Cols, Stride, Col);

        public ReadOnlySpan2D<float> Read => Views.Cols((ReadOnlySpan<float>)Data, Rows, Stride, Col, Cols);

        public Span2D<float> Write => Views.Cols(Data.AsSpan(), Rows, Stride, Col, Cols);

        public float this[int r, int c] => Data[r * Stride + Col + c];

        public bool InWindow(int index) => index % Stride >= Col && index % Stride < Col + Cols;
    }

    /// <summary>Simd vs Scalar for one shape; left/right > 0 puts every operand inside a wider matrix.</summary>
    private static void CompareWithScalar(Form form, int m, int n, int k, bool accumulate, int left, int right, ref Rng rng)
    {
        var (ar, ac) = ShapeA(form, m, k);
        var (br, bc) = ShapeB(form, n, k);
        var a = Strided.Random(ref rng, ar, ac, left, right);
        var b = Strided.Random(ref rng, br, bc, left + 1, right);
        var c0 = Strided.Random(ref rng, m, n, left, right + 2); // with accumulate, the window's values are the addend
        var aSaved = (float[])a.Data.Clone();
        var bSaved = (float[])b.Data.Clone();
        var scalar = c0.Copy();
        var simd = c0.Copy();
        var bound = new float[m * n]; // Σ_k |a_ik|·|b_kj|, the scale of each element's rounding error
        Multiply(Kernels.Reference.MatMul, form, a.Abs().Read, b.Abs().Read, RW(bound, m, n), false);
        Multiply(Kernels.Reference.MatMul, form, a.Read, b.Read, scalar.Write, accumulate);
        Multiply(Kernels.Fast.MatMul, form, a.Read, b.Read, simd.Write, accumulate);

        string what = $"{form} m={m} n={n} k={k} accumulate={accumulate} left={left} right={right}";
        if (!a.Data.SequenceEqual(aSaved) || !b.Data.SequenceEqual(bSaved)) Assert.Fail($"{what}: an input was modified");
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                float s = scalar[i, j], v = simd[i, j];
                double tol = 1e-5 * bound[i * n + j] + 1e-6 * (1 + (accumulate ? Math.Abs(c0[i, j]) : 0));
                if (!(Math.Abs(v - s) <= tol))
                    Assert.Fail($"{what}: C[{i},{j}] simd {v:G9} vs scalar {s:G9} (tolerance {tol:G3})");
            }
        for (int idx = 0; idx < c0.Data.Length; idx++)
            if (!c0.InWindow(idx))
            {
                int want = BitConverter.SingleToInt32Bits(c0.Data[idx]);
                if (BitConverter.SingleToInt32Bits(simd.Data[idx]) != want || BitConverter.SingleToInt32Bits(scalar.Data[idx]) != want)
                    Assert.Fail($"{what}: element {idx} (row {idx / c0.Stride}, column {idx % c0.Stride}) outside the C window was written");
            }
    }

    private static readonly int[] Small = [1, 5, 6, 7, 31, 33];

    // larger shapes: k past a 256 k-block, widths around 16/32/128 (vector, panel and task tile), rows past 96, parallel sizes
    private static readonly (int M, int N, int K)[] Large =
    [
        (1, 1, 1), (65, 100, 257), (257, 65, 100), (100, 257, 65), (33, 31, 300), (7, 65, 513), (1, 257, 257),
        (257, 1, 7), (257, 7, 1), (97, 160, 33), (100, 128, 100), (64, 96, 300), (6, 32, 257), (13, 16, 5),
        (5, 48, 31), (7, 64, 33), (129, 257, 65), (200, 33, 257), (96, 128, 256),
        (20, 40, 1100), (257, 65, 1030), // k over ≥ 4 blocks with few C tiles: the split-k path
        (800, 130, 300), (770, 96, 513), (1030, 64, 65), // TN with rows ≥ 768 floats apart packs Aᵀ into panels; edge tiles of 32, 2 and 70 rows
        (20, 300, 600), (45, 400, 257), (7, 1000, 33), (64, 300, 700), // C ≥ 4× wider than tall: TN in column mode too, Aᵀ packed once for every k block
    ];

    [Fact]
    public void TheBiasAddedAsCIsStoredIsBitwiseAProductThenABiasPass()
    {
        // NN with a bias must give exactly what NN and then y[n] += b give, on every path: column mode (m ≤ 384),
        // phased tiles (m > 384), split k (few tiles, many k blocks), edges, one and several k blocks
        var rng = new Rng(300);
        var pools = new[] { new WorkerPool(1), new WorkerPool(2), new WorkerPool(3) };
        try
        {
            foreach (var (m, n, k) in new[] { (1, 1, 1), (7, 33, 5), (100, 257, 300), (500, 130, 257), (500, 65, 70), (20, 40, 1100), (257, 65, 1030), (384, 200, 600) })
            {
                var a = Strided.Random(ref rng, m, k, 0, 0);
                var b = Strided.Random(ref rng, k, n, 0, 0);
                var bias = Strided.Random(ref rng, 1, n, 0, 0).Data;
                var want = new float[m * n];
                new SimdMatMul(pools[0]).NN(a.Read, b.Read, RW(want, m, n), accumulate: false);
                for (int i = 0; i < m; i++) System.Numerics.Tensors.TensorPrimitives.Add(want.AsSpan(i * n, n), bias, want.AsSpan(i * n, n));
                foreach (var pool in pools)
                {
                    var got = new float[m * n];
                    new SimdMatMul(pool).NN(a.Read, b.Read, bias, RW(got, m, n));
                    Assert.True(want.SequenceEqual(got), $"NN + bias [{m},{n},{k}] on {pool.Threads} threads differs from NN, then the bias");
                }
                var scalar = new float[m * n];
                var scalarWant = new float[m * n];
                Kernels.Reference.MatMul.NN(a.Read, b.Read, bias, RW(scalar, m, n));
                Kernels.Reference.MatMul.NN(a.Read, b.Read, RW(scalarWant, m, n), accumulate: false);
                for (int i = 0; i < m; i++) System.Numerics.Tensors.TensorPrimitives.Add(scalarWant.AsSpan(i * n, n), bias, scalarWant.AsSpan(i * n, n));
                Assert.True(scalarWant.SequenceEqual(scalar), $"scalar NN + bias [{m},{n},{k}] differs from NN, then the bias");
                for (int i = 0; i < m * n; i++)
                    Assert.True(Math.Abs(want[i] - scalar[i]) <= 1e-4 * (1 + Math.Abs(scalar[i])), $"NN + bias [{m},{n},{k}]: C[{i / n},{i % n}] simd {want[i]} vs scalar {scalar[i]}");
            }
        }
        finally
        {
            foreach (var p in pools) p.Dispose();
        }
    }

    [Theory]
    [MemberData(nameof(FormsAndModes))]
    public void SimdMatchesScalarOnDenseMatrices(Form form, bool accumulate)
    {
        var rng = new Rng((ulong)form * 2 + (accumulate ? 1UL : 0UL));
        foreach (int m in Small)
            foreach (int n in Small)
                foreach (int k in Small)
                    CompareWithScalar(form, m, n, k, accumulate, 0, 0, ref rng);
        foreach (var (m, n, k) in Large) CompareWithScalar(form, m, n, k, accumulate, 0, 0, ref rng);
    }

    [Theory]
    [MemberData(nameof(FormsAndModes))]
    public void SimdMatchesScalarOnStridedViews(Form form, bool accumulate)
    {
        var rng = new Rng(100 + (ulong)form * 2 + (accumulate ? 1UL : 0UL));
        // (left, right): padding columns on each side of the window
        (int, int)[] pads = [(3, 5), (0, 7), (9, 0), (1, 1)];
        int p = 0;
        foreach (int m in new[] { 1, 5, 7, 33 })
            foreach (int n in new[] { 1, 6, 31, 32, 65 })
                foreach (int k in new[] { 1, 7, 257 })
                {
                    var (left, right) = pads[p++ % pads.Length];
                    CompareWithScalar(form, m, n, k, accumulate, left, right, ref rng);
                }
        foreach (var (m, n, k) in new[] { (100, 128, 100), (97, 160, 257), (100, 64, 300) })
            CompareWithScalar(form, m, n, k, accumulate, 4, 3, ref rng);
        // narrow windows of wide buffers: TN's Aᵀ rows ≥ 768 floats apart are packed whatever the window's width
        foreach (var (m, n, k) in new[] { (5, 33, 257), (13, 65, 100), (9, 40, 300) })
            CompareWithScalar(form, m, n, k, accumulate, 400, 390, ref rng);
    }

    [Fact]
    public void SimdIsBitwiseIdenticalForAnyThreadCount()
    {
        var pools = new[] { new WorkerPool(1), new WorkerPool(2), new WorkerPool(3) };
        try
        {
            var kernels = pools.Select(p => new SimdMatMul(p)).ToArray();
            var rng = new Rng(200);
            // (400, 65, 600): TN takes the swapped Cᵀ path (narrow n), with k over two blocks; (200, 40, 1300) splits k
            foreach (var (m, n, k) in new[] { (300, 200, 300), (300, 256, 300), (400, 65, 600), (200, 40, 1300), (256, 65, 2100), (800, 96, 600), (40, 400, 600) })
                foreach (var form in new[] { Form.NN, Form.NT, Form.TN })
                    foreach (bool accumulate in new[] { false, true })
                    {
                        var (ar, ac) = ShapeA(form, m, k);
                        var (br, bc) = ShapeB(form, n, k);
                        var a = Strided.Random(ref rng, ar, ac, 0, 0);
                        var b = Strided.Random(ref rng, br, bc, 0, 0);
                        var c0 = Strided.Random(ref rng, m, n, 0, 0);
                        var results = new List<float[]>();
                        foreach (var mm in kernels)
                        {
                            var c = c0.Copy();
                            Multiply(mm, form, a.Read, b.Read, c.Write, accumulate);
                            results.Add(c.Data);
                        }
                        for (int t = 1; t < results.Count; t++)
                            Assert.True(results[0].SequenceEqual(results[t]),
                                $"{form} [{m},{n},{k}] accumulate={accumulate}: {pools[t].Threads} threads differ from 1 thread");
                        // and the result is right, not merely repeatable
                        var reference = c0.Copy();
                        Multiply(Kernels.Reference.MatMul, form, a.Read, b.Read, reference.Write, accumulate);
                        for (int i = 0; i < m * n; i++)
                            if (!(Math.Abs(results[0][i] - reference.Data[i]) <= 1e-4 * Math.Max(1, Math.Abs(reference.Data[i]))))
                                Assert.Fail($"{form} [{m},{n},{k}] accumulate={accumulate}: C[{i / n},{i % n}] {results[0][i]} vs scalar {reference.Data[i]}");
                    }
        }
        finally
        {
            foreach (var p in pools) p.Dispose();
        }
    }

    [Theory]
    [InlineData("simd")]
    [InlineData("scalar")]
    public void ShapeMismatchesThrow(string which)
    {
        IMatMul mm = which == "simd" ? Kernels.Fast.MatMul : Kernels.Reference.MatMul;
        var x = new float[64];
        var c = new float[64];
        foreach (bool acc in new[] { false, true })
        {
            // NN: A [2,3] · B [3,4] → C [2,4]
            mm.NN(RO(x, 2, 3), RO(x, 3, 4), RW(c, 2, 4), acc);
            Assert.Throws<ArgumentException>(() => mm.NN(RO(x, 2, 3), RO(x, 4, 4), RW(c, 2, 4), acc));
            Assert.Throws<ArgumentException>(() => mm.NN(RO(x, 2, 3), RO(x, 3, 4), RW(c, 2, 5), acc));
            Assert.Throws<ArgumentException>(() => mm.NN(RO(x, 2, 3), RO(x, 3, 4), RW(c, 3, 4), acc));
            // NT: A [2,3] · B [4,3]ᵀ → C [2,4]
            mm.NT(RO(x, 2, 3), RO(x, 4, 3), RW(c, 2, 4), acc);
            Assert.Throws<ArgumentException>(() => mm.NT(RO(x, 2, 3), RO(x, 4, 2), RW(c, 2, 4), acc));
            Assert.Throws<ArgumentException>(() => mm.NT(RO(x, 2, 3), RO(x, 4, 3), RW(c, 2, 3), acc));
            Assert.Throws<ArgumentException>(() => mm.NT(RO(x, 2, 3), RO(x, 4, 3), RW(c, 4, 2), acc));
            // TN: A [3,2]ᵀ · B [3,4] → C [2,4]
            mm.TN(RO(x, 3, 2), RO(x, 3, 4), RW(c, 2, 4), acc);
            Assert.Throws<ArgumentException>(() => mm.TN(RO(x, 3, 2), RO(x, 2, 4), RW(c, 2, 4), acc));
            Assert.Throws<ArgumentException>(() => mm.TN(RO(x, 3, 2), RO(x, 3, 4), RW(c, 3, 4), acc));
            Assert.Throws<ArgumentException>(() => mm.TN(RO(x, 3, 2), RO(x, 3, 4), RW(c, 2, 5), acc));
        }
    }
}
