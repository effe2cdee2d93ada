using BenchmarkDotNet.Attributes;
using Monitoring.Stream.Model;
using Monitoring.Stream.Series;

namespace Monitoring.Stream.Benchmarks.Micro;

/// <summary>
/// Resolving an existing series with three labels, against the simplest possible alternative: a
/// dictionary lookup of a key string the caller already built (which a real caller would have to
/// format, allocating, on every call).
/// </summary>
[MemoryDiagnoser]
public class SeriesRegistryBenchmarks
{
    private readonly SeriesRegistry _registry = new();
    private readonly Dictionary<string, int> _preformatted = new(StringComparer.Ordinal);
    private Label[][] _sorted = [];
    private Label[][] _unsorted = [];
    private string[] _keys = [];
    private int[] _visit = [];
    private int _next;

    [Params(1, 1_000, 100_000)]
    public int SeriesCount { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _sorted = new Label[SeriesCount][];
        _unsorted = new Label[SeriesCount][];
        _keys = new string[SeriesCount];
        for (int i = 0; i < SeriesCount; i++)
        {
            _sorted[i] = [new("method", i % 2 == 0 ? "GET" : "POST"), new("route", "/api/v1/items/" + i), new("status", "200")];
            // The same series as a producer with its own fixed label order would pass it.
            _unsorted[i] = [_sorted[i][2], _sorted[i][0], _sorted[i][1]];
            _registry.GetOrAdd("http_server_request_duration_seconds", _sorted[i]);
            _keys[i] = "http_server_request_duration_seconds" + LabelSet.Create(_sorted[i]);
            _preformatted[_keys[i]] = i;
        }

        // Every method visits the series in one scrambled order, as a service's traffic would.
        _visit = Enumerable.Range(0, SeriesCount).ToArray();
        new Random(7).Shuffle(_visit);
    }

    private int Next()
    {
        int i = _next + 1;
        if (i == SeriesCount)
        {
            i = 0;
        }

        _next = i;
        return _visit[i];
    }

    [Benchmark(Baseline = true, Description = "Dictionary<string,int> of a preformatted key (reference)")]
    public int PreformattedKeyLookup() => _preformatted[_keys[Next()]];

    [Benchmark(Description = "SeriesRegistry.GetOrAdd hit, 3 labels sorted")]
    public SeriesId RegistryHit() => _registry.GetOrAdd("http_server_request_duration_seconds", _sorted[Next()]);

    [Benchmark(Description = "SeriesRegistry.GetOrAdd hit, 3 labels unsorted")]
    public SeriesId RegistryHitUnsorted() => _registry.GetOrAdd("http_server_request_duration_seconds", _unsorted[Next()]);
}
