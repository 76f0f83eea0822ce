using BenchmarkDotNet.Attributes;
using MiniGpt.Layers;
using MiniGpt.Tensors;
using static MiniGpt.Tensors.Views;

namespace MiniGpt.Bench;

/// <summary>
/// The SIMD kernel at the products of one training step of workload WB
/// (2 layers, d_model 256, 8 heads × 32, d_mlp 1024, n_ctx 256, batch 16 → N = 4096 tokens).
/// Each Layer is a y[N, O] = x[N, I]·W[I, O] and each Form one of its three products:
///   NN  forward        y  = x·W         [N×I]·[I×O]      (M = N,  N = O, K = I)
///   NT  input grad     dx = dy·Wᵀ       [N×O]·[I×O]ᵀ     (M = N,  N = I, K = O)
///   TN  weight grad    dW += xᵀ·dy      [N×I]ᵀ·[N×O]     (M = I,  N = O, K = N)
/// head_qkv is one head's W_Q/W_K/W_V: its output is 32 strided columns of a [N, 256] activation,
/// exactly as Attention.Project and ProjectBackward pass it.
/// </summary>
[Config(typeof(BenchConfig))]
public class MatMulBench
{
    /// <summary>WA and WB share these shapes (N = 16·256 tokens, d_model 256); WC has N = 12·64, d_model 128, d_mlp 512.</summary>
    [Params("WB", "WC")]
    public string Workload { get; set; } = "WB";

    private int Tokens => TokensOf(Workload);
    private static int TokensOf(string workload) => workload == "WC" ? 12 * 64 : 16 * 256;

    // name → (in, out, width of the activation the output lives in, first column of the output)
    private static Dictionary<string, (int In, int Out, int Width, int Col)> LayersOf(string workload) => workload == "WC"
        ? new()
        {
            ["mlp_in"] = (128, 512, 512, 0),
            ["mlp_out"] = (512, 128, 128, 0),
            ["attn_out"] = (128, 128, 128, 0), // also W_Q/W_K/W_V with all heads in one product (Kernels.Fast)
            ["head_qkv"] = (128, 32, 128, 96),
            ["unembed"] = (128, 65, 65, 0),
        }
        : new()
        {
            ["mlp_in"] = (256, 1024, 1024, 0),
            ["mlp_out"] = (1024, 256, 256, 0),
            ["attn_out"] = (256, 256, 256, 0),   // W_O: z[N, 8·32] → [N, 256]; also W_Q/W_K/W_V, all heads in one product
            ["head_qkv"] = (256, 32, 256, 96),   // head 3 of 8 (columns 96..127): the reference per-head projection
            ["unembed"] = (256, 65, 65, 0),
        };

    [Params("mlp_in", "mlp_out", "attn_out", "head_qkv", "unembed")]
    public string Layer { get; set; } = "mlp_in";

    [Params("NN", "NT", "TN")]
    public string Form { get; set; } = "NN";

    public static MatMulShape ShapeOf(string workload, string layer, string form)
    {
        int Tokens = TokensOf(workload);
        var (i, o, _, _) = LayersOf(workload)[layer];
        return form switch
        {
            "NN" => new MatMulShape(form, Tokens, o, i),
            "NT" => new MatMulShape(form, Tokens, i, o),
            "TN" => new MatMulShape(form, i, o, Tokens),
            _ => throw new ArgumentException($"unknown form '{form}'"),
        };
    }

    private float[] _x = [], _w = [], _y = [], _dx = [], _dw = [];
    private int _in, _out, _width, _col;
    private readonly IMatMul _kernel = Kernels.Fast.MatMul;

    [GlobalSetup]
    public void Setup()
    {
        (_in, _out, _width, _col) = LayersOf(Workload)[Layer];
        var rng = new Random(42);
        float[] Fill(int n) { var a = new float[n]; for (int j = 0; j < n; j++) a[j] = (float)(rng.NextDouble() * 2 - 1); return a; }
        _x = Fill(Tokens * _in);
        _w = Fill(_in * _out);
        _y = Fill(Tokens * _width); // y for NN, dy for NT and TN
        _dx = new float[Tokens * _in];
        _dw = new float[_in * _out];
        Multiply(); // touch every buffer and the kernel's packing scratch once
    }

    [Benchmark]
    public void Multiply()
    {
        bool head = _width != _out; // head_qkv accumulates dx over heads, like ProjectBackward
        switch (Form)
        {
            case "NN":
                _kernel.NN(Mat(Ro(_x), Tokens, _in), Mat(Ro(_w), _in, _out), Cols(_y.AsSpan(), Tokens, _width, _col, _out), accumulate: false);
                break;
            case "NT":
                _kernel.NT(Cols(Ro(_y), Tokens, _width, _col, _out), Mat(Ro(_w), _in, _out), Mat(_dx.AsSpan(), Tokens, _in), accumulate: head);
                break;
            case "TN":
                _kernel.TN(Mat(Ro(_x), Tokens, _in), Cols(Ro(_y), Tokens, _width, _col, _out), Mat(_dw.AsSpan(), _in, _out), accumulate: true);
                break;
            default:
                throw new ArgumentException($"unknown form '{Form}'");
        }
    }

    private static ReadOnlySpan<float> Ro(float[] a) => a;
}

/// <summary>
/// The SIMD kernel against the scalar reference (the baseline) at 256×256×256, small enough that
/// the scalar loops finish in well under a second; the Ratio column is the speed-up.
/// </summary>
[Config(typeof(BenchConfig))]
public class MatMulVsScalarBench
{
    [Params("NN", "NT", "TN")]
    public string Form { get; set; } = "NN";

    [Params(256)]
    public int Size { get; set; } = 256;

    private float[] _a = [], _b = [], _c = [];

    [GlobalSetup]
    public void Setup()
    {
        var rng = new Random(42);
        float[] Fill(int n) { var a = new float[n]; for (int j = 0; j < n; j++) a[j] = (float)(rng.NextDouble() * 2 - 1); return a; }
        _a = Fill(Size * Size);
        _b = Fill(Size * Size);
        _c = new float[Size * Size];
    }

    [Benchmark(Baseline = true)]
    public void Scalar() => Run(Kernels.Reference.MatMul);

    [Benchmark]
    public void Simd() => Run(Kernels.Fast.MatMul);

    private void Run(IMatMul kernel)
    {
        int s = Size;
        ReadOnlySpan<float> a = _a, b = _b;
        var A = Mat(a, s, s); var B = Mat(b, s, s); var C = Mat(_c.AsSpan(), s, s);
        switch (Form)
        {
            case "NN": kernel.NN(A, B, C, accumulate: false); break;
            case "NT": kernel.NT(A, B, C, accumulate: false); break;
            case "TN": kernel.TN(A, B, C, accumulate: false); break;
            default: throw new ArgumentException($"unknown form '{Form}'");
        }
    }
}
