namespace MiniGpt.Tensors;

/// <summary>
/// Runs row-wise (or element-wise) kernels over fixed chunks on the worker pool. The chunks depend only on
/// the shape, never on the thread count, and each output element is written by exactly one task, so a
/// kernel that reduces within a chunk and then over chunks in order gives the same bits on any pool.
/// </summary>
internal static unsafe class RowParallel
{
    /// <summary>Below this many elements a parallel region (~10 µs) costs more than it saves.</summary>
    public const long SerialElements = 1 << 15;

    /// <summary>body(ctx, t) for t in [0, tasks): on the pool, or on this thread when the work is small.</summary>
    public static void Run(delegate*<void*, int, void> body, void* ctx, int tasks, long elements)
    {
        if (tasks <= 1 || elements < SerialElements)
            for (int t = 0; t < tasks; t++) body(ctx, t);
        else
            WorkerPool.Current.Run(body, ctx, tasks);
    }

    /// <summary>Rows per task for rows of width cols: about 16K elements, at least one row.</summary>
    public static int RowsPerTask(int cols) => Math.Max(1, (1 << 14) / Math.Max(1, cols));

    public static int Tasks(int n, int per) => (n + per - 1) / per;

    private struct AddJob { public float* A, B, Dst; public long Length; }
    private const int AddChunk = 1 << 14;

    /// <summary>dst = a + b elementwise (dst may alias a or b), in fixed chunks across the pool.</summary>
    public static void Add(ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> dst)
    {
        if (a.Length != b.Length || dst.Length < a.Length) throw new ArgumentException("Add: lengths differ");
        fixed (float* pa = a, pb = b, pd = dst)
        {
            var job = new AddJob { A = pa, B = pb, Dst = pd, Length = a.Length };
            Run(&AddChunkBody, &job, (int)((a.Length + AddChunk - 1) / AddChunk), a.Length);
        }
    }

    /// <summary>dst = 0, in fixed chunks across the pool (zeroing GPT-2's 124 M gradients on one thread took 11 ms a step).</summary>
    public static void Clear(Span<float> dst)
    {
        fixed (float* pd = dst)
        {
            var job = new AddJob { Dst = pd, Length = dst.Length };
            Run(&ClearChunkBody, &job, (int)((dst.Length + AddChunk - 1) / AddChunk), dst.Length);
        }
    }

    private static void ClearChunkBody(void* ctx, int t)
    {
        var j = (AddJob*)ctx;
        long i0 = (long)t * AddChunk;
        new Span<float>(j->Dst + i0, (int)Math.Min(AddChunk, j->Length - i0)).Clear();
    }

    private static void AddChunkBody(void* ctx, int t)
    {
        var j = (AddJob*)ctx;
        long i0 = (long)t * AddChunk;
        int len = (int)Math.Min(AddChunk, j->Length - i0);
        System.Numerics.Tensors.TensorPrimitives.Add(new ReadOnlySpan<float>(j->A + i0, len), new ReadOnlySpan<float>(j->B + i0, len), new Span<float>(j->Dst + i0, len));
    }
}
