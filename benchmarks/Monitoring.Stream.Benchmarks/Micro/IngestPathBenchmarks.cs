using BenchmarkDotNet.Attributes;
using Monitoring.Stream.Ingest;
using Monitoring.Stream.Model;
using Monitoring.Stream.Pipeline;

namespace Monitoring.Stream.Benchmarks.Micro;

/// <summary>
/// The two write paths of a running pipeline over 1,000 and 100,000 distinct label sets, visited in one
/// scrambled order (not one hot key): a labelled write that resolves its series per call, a write
/// through a series id resolved once (bound), and the bound path with the shard's work included.
/// </summary>
/// <remarks>
/// The first two measure the producer thread only: the shards aggregate on the other core. The third
/// writes a block, flushes and waits until the shards have aggregated every point
/// (<see cref="MetricsPipeline.DrainAsync"/>), so its time per point is writer and shard together (they
/// overlap on two cores; the drain's round trip, a few microseconds, is spread over the block).
/// Windows are an hour long and every point carries the same timestamp, so no window closes during a run.
/// </remarks>
[MemoryDiagnoser]
public class IngestPathBenchmarks
{
    private const string Metric = "http_server_request_duration_seconds";
    private const int Calls = 4096;
    private const int DrainedCalls = 65_536;

    private MetricsPipeline _pipeline = null!;
    private PointWriter _writer = null!;
    private Label[][] _labels = [];
    private Label[][] _equalLabels = [];
    private SeriesId[] _ids = [];
    private int[] _visit = [];
    private double[] _values = [];
    private long _timestamp;
    private int _next;
    private long _callerCount;

    /// <summary>Distinct label sets (series) visited.</summary>
    [Params(1_000, 100_000)]
    public int SeriesCount { get; set; }

    /// <summary>Starts a pipeline with no sink and resolves every series once.</summary>
    [GlobalSetup]
    public void Setup()
    {
        _pipeline = new MetricsPipeline(new MetricsPipelineOptions { WindowSize = TimeSpan.FromHours(1) }, []);
        _pipeline.Start();
        _writer = _pipeline.CreateWriter("benchmark", BackpressureMode.Wait);
        _timestamp = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        _labels = new Label[SeriesCount][];
        _ids = new SeriesId[SeriesCount];
        for (int i = 0; i < SeriesCount; i++)
        {
            // The load harness's label sets: two methods, a quarter as many routes, four statuses.
            _labels[i] = [new("method", i % 2 == 0 ? "GET" : "POST"), new("route", "/api/v1/items/" + (i / 4)), new("status", (i % 4) switch { 0 => "200", 1 => "404", 2 => "500", _ => "503" })];
            _ids[i] = _pipeline.Registry.GetOrAdd(Metric, _labels[i]);
        }

        // The same label sets again with other string objects of the same text: resolved by value, not identity.
        _equalLabels = [.. _labels.Select(l => l.Select(x => new Label(new string(x.Name.AsSpan()), new string(x.Value.AsSpan()))).ToArray())];

        // Every series in one scrambled order, repeated to a power of two at least as long as the block.
        int[] order = [.. Enumerable.Range(0, SeriesCount)];
        new Random(7).Shuffle(order);
        _visit = [.. Enumerable.Range(0, (int)System.Numerics.BitOperations.RoundUpToPowerOf2((uint)Math.Max(DrainedCalls, SeriesCount))).Select(i => order[i % SeriesCount])];
        var random = new Random(11);
        _values = [.. Enumerable.Range(0, _visit.Length).Select(_ => 0.02 * Math.Exp(random.NextDouble() * 2))];

        // Every series once, so the shards' window state and sketches exist before timing.
        for (int i = 0; i < SeriesCount; i++)
        {
            _writer.Write(_ids[i], _values[i % _values.Length], _timestamp);
        }

        _writer.Flush();
        _pipeline.DrainAsync().GetAwaiter().GetResult();
    }

    /// <summary>Stops the pipeline.</summary>
    [GlobalCleanup]
    public void Cleanup()
    {
        _writer.Dispose();
        _pipeline.StopAsync().GetAwaiter().GetResult();
    }

    /// <summary>A labelled write with the series' own string objects (identity path): resolve, then append to the writer's batch (producer thread only).</summary>
    [Benchmark(OperationsPerInvoke = Calls, Description = "Write(metric, labels, v, ts): resolve per call")]
    public void ResolvedWrite()
    {
        int at = _next;
        for (int i = 0; i < Calls; i++)
        {
            int k = (at + i) & (_visit.Length - 1);
            _writer.Write(Metric, _labels[_visit[k]], _values[k], _timestamp);
        }

        _next = (at + Calls) & (_visit.Length - 1);
    }

    /// <summary>A labelled write whose strings are not the series' own objects: resolved by hashing and comparing their text.</summary>
    [Benchmark(OperationsPerInvoke = Calls, Description = "Write(metric, labels, v, ts): resolve per call, equal strings (by value)")]
    public void ResolvedWriteByValue()
    {
        int at = _next;
        for (int i = 0; i < Calls; i++)
        {
            int k = (at + i) & (_visit.Length - 1);
            _writer.Write(Metric, _equalLabels[_visit[k]], _values[k], _timestamp);
        }

        _next = (at + Calls) & (_visit.Length - 1);
    }

    /// <summary>A bound write: the series id was resolved once (producer thread only).</summary>
    [Benchmark(OperationsPerInvoke = Calls, Description = "Write(id, v, ts): bound")]
    public void BoundWrite()
    {
        int at = _next;
        for (int i = 0; i < Calls; i++)
        {
            int k = (at + i) & (_visit.Length - 1);
            _writer.Write(_ids[_visit[k]], _values[k], _timestamp);
        }

        _next = (at + Calls) & (_visit.Length - 1);
    }

    /// <summary>
    /// A bound write beside an atomic increment of the caller's own (an application counting requests with
    /// <see cref="Interlocked"/>). Guards the store path: with non-temporal point stores (tried twice, reverted)
    /// each locked instruction drained the write-combining buffers and a call cost 188 ns instead of 29.
    /// </summary>
    [Benchmark(OperationsPerInvoke = Calls, Description = "Write(id, v, ts): bound, caller's Interlocked.Increment beside")]
    public void BoundWriteBesideInterlocked()
    {
        int at = _next;
        for (int i = 0; i < Calls; i++)
        {
            int k = (at + i) & (_visit.Length - 1);
            Interlocked.Increment(ref _callerCount);
            _writer.Write(_ids[_visit[k]], _values[k], _timestamp);
        }

        _next = (at + Calls) & (_visit.Length - 1);
    }

    /// <summary>Bound writes, then flush and wait until the shards aggregated them: writer to shard, all work included.</summary>
    [Benchmark(OperationsPerInvoke = DrainedCalls, Description = "Write(id, v, ts) + shard aggregation (drained)")]
    public void BoundWriteToShard()
    {
        int at = _next;
        for (int i = 0; i < DrainedCalls; i++)
        {
            int k = (at + i) & (_visit.Length - 1);
            _writer.Write(_ids[_visit[k]], _values[k], _timestamp);
        }

        _next = (at + DrainedCalls) & (_visit.Length - 1);
        _writer.Flush();
        _pipeline.DrainAsync().GetAwaiter().GetResult();
    }
}
