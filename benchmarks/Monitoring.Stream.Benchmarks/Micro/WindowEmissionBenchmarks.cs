using Apache.Arrow;
using Apache.Arrow.Ipc;
using BenchmarkDotNet.Attributes;
using Monitoring.Stream.Arrow;
using Monitoring.Stream.Model;
using Monitoring.Stream.Series;
using Monitoring.Stream.Windows;

namespace Monitoring.Stream.Benchmarks.Micro;

/// <summary>
/// A closed window of one shard into Arrow, as the pipeline emits it: the record batch built from the
/// window state (names, moments, quantiles and sketch bytes of every series), and that batch written as
/// a new Arrow IPC file, as the file store does. 20 latency points per series, one shard holding all of them.
/// </summary>
[MemoryDiagnoser]
public class WindowEmissionBenchmarks
{
    private const string Metric = "http_server_request_duration_seconds";

    private WindowBuffer _window = null!;
    private ArrowWindowWriter _writer = null!;
    private Schema _schema = null!;
    private string _path = "";
    private long _sequence;

    /// <summary>Series in the window.</summary>
    [Params(1_000, 100_000)]
    public int SeriesCount { get; set; }

    /// <summary>Fills one window of one shard, as the load harness's window test does.</summary>
    [GlobalSetup]
    public void Setup()
    {
        var registry = new SeriesRegistry();
        _window = new WindowBuffer(SeriesCount + 1, withSketches: true, 0.01, 2048) { Start = 0, End = 10_000 };
        var random = new Random(1);
        for (int i = 0; i < SeriesCount; i++)
        {
            Label[] labels = [new("method", i % 2 == 0 ? "GET" : "POST"), new("route", "/api/v1/items/" + (i / 4)), new("status", (i % 4) switch { 0 => "200", 1 => "404", 2 => "500", _ => "503" })];
            int id = registry.GetOrAdd(Metric, labels).Value;
            for (int k = 0; k < 20; k++)
            {
                _window.Add(id, 0.02 * Math.Exp(random.NextDouble() * 2), k);
            }
        }

        _schema = WindowSchema.Create("benchmark");
        _writer = new ArrowWindowWriter(registry, 1, _schema);
        _path = Path.Combine(Path.GetTempPath(), $"ms-bench-window-{Environment.ProcessId}.arrow");
    }

    /// <summary>Removes the file.</summary>
    [GlobalCleanup]
    public void Cleanup() => File.Delete(_path);

    /// <summary>The record batch of the window; disposing it returns its pooled columns.</summary>
    [Benchmark(Description = "window -> RecordBatch (one shard)")]
    public int Build()
    {
        using RecordBatch batch = _writer.Build(_window, 0, ++_sequence);
        return batch.Length;
    }

    /// <summary>The record batch, then a new IPC file with it.</summary>
    [Benchmark(Description = "window -> RecordBatch -> new Arrow IPC file (one shard)")]
    public long BuildAndWriteFile()
    {
        File.Delete(_path);
        using RecordBatch batch = _writer.Build(_window, 0, ++_sequence);
        using (var stream = new FileStream(_path, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16))
        using (var file = new ArrowFileWriter(stream, _schema))
        {
            file.WriteRecordBatch(batch);
            file.WriteEnd();
        }

        return batch.Length;
    }
}
