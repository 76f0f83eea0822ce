using System.Buffers.Binary;
using System.Diagnostics;
using System.Text;
using System.Text.Json.Nodes;
using MiniGpt.Checkpoints;
using MiniGpt.Model;
using MiniGpt.Training;
using Xunit;
using Xunit.Abstractions;

namespace MiniGpt.Tests;

/// <summary>
/// Fuzzes the checkpoint reader (safetensors container, header JSON, config metadata) and the training
/// options reader with inputs derived from a real small checkpoint: truncations, bit flips, header-length
/// edits, dtype/shape/offset edits, duplicate, missing and extra tensors, huge claimed sizes, damaged
/// configs and random bytes. Every input must either load or fail with our one-line UserError: never
/// another exception, a hang or a large allocation. MINIGPT_FUZZ_CASES sets the number of inputs (1,500
/// by default, a few seconds), MINIGPT_FUZZ_SEED the seed; the figures are printed to the test output.
/// </summary>
public class SafeTensorsFuzzTests(ITestOutputHelper output)
{
    /// <summary>More than any input here can justify: the real checkpoint is ~20 KB, its model a few hundred KB.</summary>
    private const long MaxAllocatedBytes = 64L << 20;
    private static readonly TimeSpan HangAfter = TimeSpan.FromSeconds(10);

    private sealed class Tally
    {
        public long Tried, Loaded, Rejected;
        public long MaxAllocated;
        public readonly Dictionary<string, long> ByKind = new();
        public readonly List<string> Failures = new();
    }

    [Fact]
    public void EveryDamagedCheckpointLoadsOrFailsWithAUserError()
    {
        int cases = int.TryParse(Environment.GetEnvironmentVariable("MINIGPT_FUZZ_CASES"), out int n) && n > 0 ? n : 1500;
        ulong seed = ulong.TryParse(Environment.GetEnvironmentVariable("MINIGPT_FUZZ_SEED"), out ulong s) ? s : 20261125;
        string dir = TestPaths.TempDir("fuzz");
        string path = Path.Combine(dir, "f.safetensors");
        var model = GptModel.Create(new ModelConfig { NLayers = 2, DModel = 16, NHeads = 2, DHead = 8, DMlp = 32, NCtx = 8, DVocab = 13 }, 3);
        Checkpoint.Save(path, model, "{\"type\":\"char\",\"chars\":\"abcdefghijklm\"}", new Dictionary<string, string> { ["step"] = "10" });
        byte[] good = File.ReadAllBytes(path);
        string optionsJson = new TrainOptions().Resolved().ToJson();

        var tally = new Tally();
        var clock = Stopwatch.StartNew();
        long caseStart = 0; // Stopwatch ticks of the running case, 0 between cases
        string current = "";
        Exception? crashed = null;
        var worker = new Thread(() =>
        {
            try
            {
                var rng = new Random((int)seed);
                for (int i = 0; i < cases; i++)
                {
                    var (kind, bytes) = Mutate(good, rng);
                    bool options = kind == "options-json";
                    current = $"case {i} ({kind})";
                    if (!options) File.WriteAllBytes(path, bytes);
                    Interlocked.Exchange(ref caseStart, Stopwatch.GetTimestamp());
                    long before = GC.GetAllocatedBytesForCurrentThread();
                    try
                    {
                        if (options) TrainOptions.FromJson(MutateText(optionsJson, rng)).Validate();
                        else Checkpoint.Load(path);
                        tally.Loaded++;
                    }
                    catch (UserError e)
                    {
                        tally.Rejected++;
                        if (e.Message.Contains('\n') || e.Message.Length == 0) tally.Failures.Add($"{current}: multi-line or empty UserError: {e.Message}");
                    }
                    catch (Exception e)
                    {
                        tally.Failures.Add($"{current}: {e.GetType().Name}: {e.Message.Split('\n')[0]}");
                        if (!options) File.WriteAllBytes(Path.Combine(dir, $"crash-{i}.safetensors"), bytes);
                    }
                    long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
                    tally.MaxAllocated = Math.Max(tally.MaxAllocated, allocated);
                    if (allocated > MaxAllocatedBytes)
                    {
                        tally.Failures.Add($"{current}: allocated {allocated:N0} bytes");
                        if (!options) File.WriteAllBytes(Path.Combine(dir, $"alloc-{i}.safetensors"), bytes);
                    }
                    Interlocked.Exchange(ref caseStart, 0);
                    tally.Tried++;
                    tally.ByKind[kind] = tally.ByKind.GetValueOrDefault(kind) + 1;
                }
            }
            catch (Exception e) { crashed = e; }
        }) { IsBackground = true };
        worker.Start();
        string? hang = null;
        while (!worker.Join(50))
        {
            long t0 = Interlocked.Read(ref caseStart);
            if (t0 != 0 && Stopwatch.GetElapsedTime(t0) > HangAfter) { hang = current; break; }
        }

        output.WriteLine($"fuzz: seed {seed}, {tally.Tried:N0} inputs tried in {clock.Elapsed.TotalSeconds:F1} s: {tally.Loaded:N0} loaded, " +
            $"{tally.Rejected:N0} rejected with a UserError, {tally.Failures.Count} failures (crashes, other exceptions, large allocations), " +
            $"{(hang != null ? 1 : 0)} hangs; largest allocation of one case {tally.MaxAllocated:N0} bytes");
        output.WriteLine("by kind: " + string.Join(", ", tally.ByKind.OrderBy(k => k.Key).Select(k => $"{k.Key} {k.Value:N0}")));
        foreach (var f in tally.Failures.Take(20)) output.WriteLine(f);
        if (tally.Failures.Count > 0) output.WriteLine($"the failing inputs are kept in {dir}");
        Assert.True(hang == null, $"{hang} did not finish within {HangAfter.TotalSeconds} s");
        Assert.True(crashed == null, $"the fuzz loop itself failed: {crashed}");
        Assert.True(tally.Failures.Count == 0, string.Join("\n", tally.Failures.Take(20)));
        Assert.Equal(cases, tally.Tried);
        Assert.True(tally.Loaded > 0 && tally.Rejected > tally.Tried / 2, $"suspicious mix: {tally.Loaded} loaded, {tally.Rejected} rejected");
        Directory.Delete(dir, true);
    }

    private static readonly string[] DTypes = ["F32", "F16", "BF16", "F64", "I64", "U8", "BOOL", "f32", "", "F32 ", "F8_E4M3"];

    /// <summary>One damaged input: the kind of damage and the bytes.</summary>
    private static (string Kind, byte[] Bytes) Mutate(byte[] good, Random rng)
    {
        int headerLen = (int)BinaryPrimitives.ReadUInt64LittleEndian(good);
        switch (rng.Next(12))
        {
            case 0: return ("truncate", good[..rng.Next(good.Length)]);
            case 1:
            {
                var b = (byte[])good.Clone();
                for (int k = rng.Next(1, 9); k > 0; k--) b[rng.Next(b.Length)] ^= (byte)(1 << rng.Next(8));
                return ("bit-flip", b);
            }
            case 2:
            {
                var b = (byte[])good.Clone();
                for (int k = rng.Next(1, 4); k > 0; k--) b[8 + rng.Next(headerLen)] ^= (byte)(1 << rng.Next(8));
                return ("header-bit-flip", b);
            }
            case 3:
            {
                var b = (byte[])good.Clone();
                ulong v = rng.Next(5) switch
                {
                    0 => (ulong)(headerLen + rng.Next(-16, 17)),
                    1 => (ulong)rng.NextInt64(),
                    2 => ulong.MaxValue - (ulong)rng.Next(16),
                    3 => (ulong)(good.Length - 8 + rng.Next(-2, 3)),
                    _ => (ulong)rng.Next(16),
                };
                BinaryPrimitives.WriteUInt64LittleEndian(b, v);
                return ("header-length", b);
            }
            case 4:
            {
                var b = new byte[rng.Next(0, 4096)];
                rng.NextBytes(b);
                if (b.Length >= 8 && rng.Next(2) == 0) BinaryPrimitives.WriteUInt64LittleEndian(b, (ulong)rng.Next(b.Length));
                return ("random-bytes", b);
            }
            case 5:
            {
                int at = rng.Next(good.Length);
                var ins = new byte[rng.Next(1, 64)];
                rng.NextBytes(ins);
                return ("splice", [.. good[..at], .. ins, .. good[at..]]);
            }
            case 6: return ("options-json", []);
            default: return EditHeader(good, headerLen, rng);
        }
    }

    /// <summary>Structured edits of the header JSON (then written back with a consistent length prefix, so the edit reaches the checks behind it).</summary>
    private static (string Kind, byte[] Bytes) EditHeader(byte[] good, int headerLen, Random rng)
    {
        var header = (JsonObject)JsonNode.Parse(Encoding.UTF8.GetString(good, 8, headerLen))!;
        byte[] data = good[(8 + headerLen)..];
        var names = header.Select(p => p.Key).Where(k => k != "__metadata__").ToList();
        string name = names[rng.Next(names.Count)];
        var t = (JsonObject)header[name]!;
        string kind;
        string? rawInsert = null;
        switch (rng.Next(9))
        {
            case 0: kind = "dtype"; t["dtype"] = DTypes[rng.Next(DTypes.Length)]; break;
            case 1:
            {
                kind = "shape";
                var shape = (JsonArray)t["shape"]!;
                JsonNode? dim = rng.Next(6) switch
                {
                    0 => -1, 1 => int.MaxValue, 2 => 0, 3 => 1L << 40, 4 => "8", _ => rng.Next(1, 64),
                };
                if (shape.Count > 0 && rng.Next(3) > 0) shape[rng.Next(shape.Count)] = dim;
                else if (rng.Next(2) == 0) shape.Add(dim);
                else if (shape.Count > 0) shape.RemoveAt(0);
                break;
            }
            case 2:
            {
                kind = "offsets";
                var off = (JsonArray)t["data_offsets"]!;
                long b0 = off[0]!.GetValue<long>(), e0 = off[1]!.GetValue<long>();
                long[] picks = [-1, 0, data.Length, data.Length + 4, long.MaxValue, long.MaxValue - 3, e0 + 4, b0 - 4, rng.Next(data.Length)];
                if (rng.Next(2) == 0) off[rng.Next(2)] = picks[rng.Next(picks.Length)];
                else { off[0] = e0; off[1] = b0; }
                if (rng.Next(8) == 0) off.Add(0);
                break;
            }
            case 3: kind = "missing-tensor"; header.Remove(name); break;
            case 4:
                kind = "duplicate-tensor";
                rawInsert = $"\"{name}\":{t.ToJsonString()},";
                break;
            case 5:
                kind = "extra-tensor";
                header["blocks.0.attn.W_X"] = new JsonObject { ["dtype"] = "F32", ["shape"] = new JsonArray(2), ["data_offsets"] = new JsonArray(0, 8) };
                break;
            case 6:
            {
                kind = "huge-size";
                t["shape"] = new JsonArray(1 << 30, 1 << 30);
                t["data_offsets"] = new JsonArray(0, rng.Next(2) == 0 ? data.Length : long.MaxValue);
                break;
            }
            case 7:
            {
                kind = "config";
                var meta = (JsonObject)header["__metadata__"]!;
                meta["config"] = MutateText(meta["config"]!.GetValue<string>(), rng);
                break;
            }
            default:
            {
                kind = "metadata";
                var meta = (JsonObject)header["__metadata__"]!;
                switch (rng.Next(4))
                {
                    case 0: meta["config"] = 5; break;
                    case 1: header["__metadata__"] = new JsonArray(1, 2); break;
                    case 2: meta.Remove("config"); break;
                    default: meta["tokenizer"] = MutateText(meta["tokenizer"]!.GetValue<string>(), rng); break;
                }
                break;
            }
        }
        string json = header.ToJsonString();
        if (rawInsert != null) json = "{" + rawInsert + json[1..];
        var hb = Encoding.UTF8.GetBytes(json);
        var outBytes = new byte[8 + hb.Length + data.Length];
        BinaryPrimitives.WriteUInt64LittleEndian(outBytes, (ulong)hb.Length);
        hb.CopyTo(outBytes, 8);
        data.CopyTo(outBytes, 8 + hb.Length);
        return (kind, outBytes);
    }

    private static readonly string[] Values = ["0", "-1", "1", "2147483647", "-2147483648", "4294967296", "1e308", "null", "true", "\"x\"", "[]", "{}", "0.5", "NaN", "99999"];

    /// <summary>A JSON text with one value replaced, a key dropped, a cut, or a byte changed.</summary>
    private static string MutateText(string json, Random rng)
    {
        switch (rng.Next(4))
        {
            case 0:
            {
                // replace the value after a random ':' up to the next ',' or '}'
                var colons = Enumerable.Range(0, json.Length).Where(i => json[i] == ':').ToList();
                if (colons.Count == 0) return json;
                int c = colons[rng.Next(colons.Count)];
                int end = json.IndexOfAny([',', '}'], c + 1);
                if (end < 0) end = json.Length;
                return json[..(c + 1)] + Values[rng.Next(Values.Length)] + json[end..];
            }
            case 1:
            {
                var node = JsonNode.Parse(json) as JsonObject;
                if (node == null || node.Count == 0) return json;
                node.Remove(node.ElementAt(rng.Next(node.Count)).Key);
                return node.ToJsonString();
            }
            case 2: return json[..rng.Next(json.Length)];
            default:
            {
                var chars = json.ToCharArray();
                chars[rng.Next(chars.Length)] = (char)rng.Next(32, 127);
                return new string(chars);
            }
        }
    }
}
