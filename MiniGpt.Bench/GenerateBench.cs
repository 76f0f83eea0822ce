using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;
using MiniGpt.Generation;
using MiniGpt.Layers;
using MiniGpt.Model;
using MiniGpt.Tensors;

namespace MiniGpt.Bench;

/// <summary>
/// Generation on GPT-2 124M's shape (12 layers, 12 heads, d_model 768, d_mlp 3072, n_ctx 1024, d_vocab 50,257,
/// LayerNorm, MLPs; random init): after a <see cref="PromptTokens"/>-token prompt (16 or 256), one operation
/// appends <see cref="NewTokens"/> tokens (the operation timed), each returning the next logits, with the key/value cache (Cached) or a
/// forward pass over the whole window per token (Uncached, the old sample loop). The same tokens and the same
/// prefill in both, so the difference is the per-token cost. ms/token and tok/s divide the median by NewTokens;
/// the prefill (one forward pass over the prompt, the same in both) runs in the iteration setup, untimed.
/// CachedBands is Cached with the first GEMV kernel (<see cref="BandGemv"/>: 128-column bands, Vector256), kept as
/// the baseline of the current one. Triad measures the machine's memory bandwidth in the same run and on the same
/// pool: a = 3·b + c over 256 MB arrays (<see cref="TriadFloats"/> floats each), 8 per operation; its GB/s counts
/// the 3 arrays (12 bytes an element, not the write-allocate read of a). GB/s of a cached case is the bytes a
/// generated token must read (<see cref="BytesPerToken"/>: every GEMV weight and bias, and the key/value cache up
/// to its position) / ms per token, and "of triad" that over the Triad's GB/s of the same run.
///   dotnet run -c Release --project MiniGpt.Bench -- --filter '*GenerateBench*'
/// </summary>
[Config(typeof(Config))]
[InvocationCount(1)] // an operation continues the sequence its iteration's setup prefilled
public class GenerateBench
{
    public const int NewTokens = 32;

    [Params("Cached", "CachedBands", "Uncached", "Triad")]
    public string Mode { get; set; } = "Cached";

    /// <summary>Tokens of the prompt: a short one, and one long enough that a window's attention and its rows count.</summary>
    [Params(16, 256)]
    public int PromptTokens { get; set; } = 16;

    public static readonly ModelConfig Gpt2Small = new()
    {
        NLayers = 12, NHeads = 12, DModel = 768, DHead = 64, DMlp = 3072, NCtx = 1024, DVocab = 50257, AttnOnly = false,
    };

    private Generator _gen = null!;
    private int[] _prompt = [];
    private readonly int[] _tokens = new int[NewTokens];

    [GlobalSetup]
    public void Setup()
    {
        if (Mode == "Triad")
        {
            SetupTriad();
            return;
        }
        var rng = new Rng(1);
        _prompt = new int[PromptTokens];
        for (int i = 0; i < PromptTokens; i++) _prompt[i] = rng.NextInt(Gpt2Small.DVocab);
        for (int i = 0; i < NewTokens; i++) _tokens[i] = rng.NextInt(Gpt2Small.DVocab);
        _gen = new Generator(GptModel.Create(Gpt2Small, 1, Mode == "CachedBands" ? new BandGemvKernels() : null), useCache: Mode != "Uncached");
        Console.WriteLine($"// GenerateBench {Mode}: kernels {_gen.Model.Kernels.Name}, Vector512.IsHardwareAccelerated = {Vector512.IsHardwareAccelerated}, " +
            $"Vector256 = {Vector256.IsHardwareAccelerated}, threads {MiniGpt.Tensors.WorkerPool.Shared.Threads}");
        Prefill();
        Generate(); // first use: activations, JIT
    }

    /// <summary>Before each iteration (one operation each, see [InvocationCount(1)]): the prompt, outside the timing.</summary>
    [IterationSetup]
    public void Prefill()
    {
        if (Mode != "Triad") _gen.Prefill(_prompt);
    }

    [Benchmark]
    public float Generate()
    {
        if (Mode == "Triad") return Triads();
        float s = 0;
        foreach (int t in _tokens) s += _gen.Append(t)[0];
        return s;
    }

    private sealed class Config : ManualConfig
    {
        public Config()
        {
            Add(new BenchConfig());
            AddColumn(new PerTokenColumn(perSecond: false), new PerTokenColumn(perSecond: true), new BandwidthColumn(ofTriad: false), new BandwidthColumn(ofTriad: true));
        }
    }

    /// <summary>Median time per generated token (ms), or generated tokens per second from the median.</summary>
    private sealed class PerTokenColumn(bool perSecond) : IColumn
    {
        public string Id => perSecond ? "MiniGpt.GenTokPerS" : "MiniGpt.MsPerToken";
        public string ColumnName => perSecond ? "gen tok/s" : "ms/token";
        public string Legend => perSecond ? $"Generated tokens per second: {NewTokens} / median" : $"Median time / {NewTokens} generated tokens, in ms";
        public bool AlwaysShow => true;
        public ColumnCategory Category => ColumnCategory.Custom;
        public int PriorityInCategory => perSecond ? 2 : 1;
        public bool IsNumeric => true;
        public UnitType UnitType => UnitType.Dimensionless;
        public bool IsAvailable(Summary summary) => summary.BenchmarksCases.Any(b => b.Descriptor.Type == typeof(GenerateBench));
        public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;
        public string GetValue(Summary summary, BenchmarkCase benchmarkCase) => GetValue(summary, benchmarkCase, summary.Style);

        public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style)
        {
            if (benchmarkCase.Descriptor.Type != typeof(GenerateBench) || ModeOf(benchmarkCase) == "Triad") return "-";
            if (summary[benchmarkCase]?.ResultStatistics?.Median is not double ns || !(ns > 0)) return "NA";
            double msPerToken = ns / 1e6 / NewTokens;
            return (perSecond ? 1000 / msPerToken : msPerToken).ToString("N2", style.CultureInfo);
        }

        public override string ToString() => ColumnName;
    }

    private static string? ModeOf(BenchmarkCase c) => c.Parameters.Items.FirstOrDefault(p => p.Name == nameof(Mode))?.Value as string;
    private static int PromptOf(BenchmarkCase c) => c.Parameters.Items.FirstOrDefault(p => p.Name == nameof(PromptTokens))?.Value is int n ? n : 0;

    /// <summary>
    /// Bytes a cached token must read, averaged over the <see cref="NewTokens"/> tokens after a prompt of p:
    /// the GEMV weights and biases (per layer W_Q, W_K, W_V, W_O [768, 768] and W_in, W_out [768, 3072] with their
    /// biases, and W_U [768, 50,257] with b_U: 494.7 MB at GPT-2 small's shape), and the cached keys and values the
    /// token attends to (2·layers·(t + 1)·d_model floats at position t). Not counted: the one row of W_E and W_pos,
    /// LayerNorm's parameters, activations (all a few KB).
    /// </summary>
    public static double BytesPerToken(int prompt)
    {
        var c = Gpt2Small;
        long D = c.DModel, HD = c.NHeads * c.DHead, M = c.DMlp, V = c.DVocab;
        long perLayer = 3 * (D * HD + HD) + (HD * D + D) + (D * M + M) + (M * D + D);
        double weights = 4.0 * (c.NLayers * perLayer + D * V + V);
        double meanPositions = prompt + (NewTokens + 1) / 2.0; // cache rows read: t + 1 for t = prompt … prompt + NewTokens − 1
        return weights + 4.0 * 2 * c.NLayers * D * meanPositions;
    }

    // ---- Triad: a = 3·b + c over arrays far larger than the caches, in fixed chunks across the worker pool ----

    public const long TriadFloats = 64L << 20; // 256 MB an array
    private const int TriadsPerOp = 8; // ~150 ms an operation
    private unsafe struct TriadJob { public float* A, B, C; }
    private unsafe float* _ta, _tb, _tc;

    private unsafe void SetupTriad()
    {
        nuint bytes = (nuint)(TriadFloats * sizeof(float));
        _ta = (float*)NativeMemory.AlignedAlloc(bytes, 64);
        _tb = (float*)NativeMemory.AlignedAlloc(bytes, 64);
        _tc = (float*)NativeMemory.AlignedAlloc(bytes, 64);
        new Span<float>(_ta, (int)TriadFloats).Fill(0); // touch every page before timing
        new Span<float>(_tb, (int)TriadFloats).Fill(1);
        new Span<float>(_tc, (int)TriadFloats).Fill(2);
        Console.WriteLine($"// GenerateBench Triad: 3 arrays of {TriadFloats * 4 >> 20} MB, threads {WorkerPool.Shared.Threads}");
        Triads();
    }

    private unsafe float Triads()
    {
        var job = new TriadJob { A = _ta, B = _tb, C = _tc };
        // 4 MB chunks: 64K-float (256 KB) chunks handed out in turn measured 36–48 GB/s where two contiguous halves gave
        // 60–62, and two halves are fragile on a pool (a thread that takes both measures one core); 4 MB chunks gave 56–59
        for (int r = 0; r < TriadsPerOp; r++) WorkerPool.Shared.Run(&TriadTask, &job, (int)(TriadFloats / TriadChunk));
        return _ta[0];
    }

    private const int TriadChunk = 1 << 20; // floats: 4 MB
    private static unsafe void TriadTask(void* ctx, int t)
    {
        var j = (TriadJob*)ctx;
        long o = (long)t * TriadChunk;
        System.Numerics.Tensors.TensorPrimitives.MultiplyAdd(new ReadOnlySpan<float>(j->B + o, TriadChunk), 3f,
            new ReadOnlySpan<float>(j->C + o, TriadChunk), new Span<float>(j->A + o, TriadChunk));
    }

    [GlobalCleanup]
    public unsafe void Cleanup()
    {
        if (_ta == null) return;
        NativeMemory.AlignedFree(_ta);
        NativeMemory.AlignedFree(_tb);
        NativeMemory.AlignedFree(_tc);
        _ta = _tb = _tc = null;
    }

    /// <summary>GB/s: a cached case's bytes per token / median ms per token, or the Triad's 3 arrays / median; or the first over the second.</summary>
    private sealed class BandwidthColumn(bool ofTriad) : IColumn
    {
        public string Id => ofTriad ? "MiniGpt.OfTriad" : "MiniGpt.GBps";
        public string ColumnName => ofTriad ? "of triad" : "GB/s";
        public string Legend => ofTriad
            ? "A cached case's GB/s / the Triad's GB/s in the same run"
            : "Cached: weights, biases and key/value cache read per token (BytesPerToken) / median per token; Triad: 3 arrays × 8 / median (no write-allocate), in 10⁹ bytes per second";
        public bool AlwaysShow => true;
        public ColumnCategory Category => ColumnCategory.Custom;
        public int PriorityInCategory => ofTriad ? 4 : 3;
        public bool IsNumeric => true;
        public UnitType UnitType => UnitType.Dimensionless;
        public bool IsAvailable(Summary summary) => summary.BenchmarksCases.Any(b => b.Descriptor.Type == typeof(GenerateBench));
        public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;
        public string GetValue(Summary summary, BenchmarkCase benchmarkCase) => GetValue(summary, benchmarkCase, summary.Style);

        private static double? GBps(Summary summary, BenchmarkCase c)
        {
            if (summary[c]?.ResultStatistics?.Median is not double ns || !(ns > 0)) return null;
            return ModeOf(c) switch
            {
                "Triad" => TriadsPerOp * 3.0 * TriadFloats * sizeof(float) / ns,
                "Cached" or "CachedBands" => BytesPerToken(PromptOf(c)) * NewTokens / ns,
                _ => null,
            };
        }

        public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style)
        {
            if (benchmarkCase.Descriptor.Type != typeof(GenerateBench)) return "-";
            if (GBps(summary, benchmarkCase) is not double g) return "-";
            if (!ofTriad) return g.ToString("N1", style.CultureInfo);
            if (ModeOf(benchmarkCase) == "Triad") return "-";
            var triads = summary.BenchmarksCases.Where(c => ModeOf(c) == "Triad").Select(c => GBps(summary, c)).OfType<double>().ToList();
            return triads.Count == 0 ? "NA" : (g / triads.Average()).ToString("P0", style.CultureInfo);
        }

        public override string ToString() => ColumnName;
    }
}

/// <summary>The fast kernels with the first GEMV (<see cref="BandGemv"/>), the baseline Cached is compared against.</summary>
internal sealed class BandGemvKernels : FastKernels
{
    public override string Name => "fast, 128-column-band GEMV";
    public override void Gemv(ReadOnlySpan<float> x, ReadOnlySpan<float> w, ReadOnlySpan<float> b, Span<float> y, int G, int I, int O) =>
        BandGemv.Forward(x, w, b, y, G, I, O);
}
