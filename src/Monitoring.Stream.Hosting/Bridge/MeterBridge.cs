using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using System.Globalization;
using System.Runtime.CompilerServices;
using Monitoring.Stream.Hosting.Instruments;
using Monitoring.Stream.Ingest;
using Monitoring.Stream.Model;

namespace Monitoring.Stream.Hosting.Bridge;

/// <summary>
/// Feeds the engine from the application's existing <see cref="Meter"/>s through a <see cref="MeterListener"/>:
/// no change at the call sites. Each measurement becomes one point of the series named by the
/// instrument (dots and other characters outside the Prometheus alphabet become <c>_</c>) and its tags.
/// </summary>
/// <remarks>
/// <list type="bullet">
/// <item><c>Counter&lt;T&gt;</c>: each increment is a point (a window's sum is the increase); negative increments are refused and counted.</item>
/// <item><c>UpDownCounter&lt;T&gt;</c>: each signed increment is a point (a window's sum is the net change).</item>
/// <item><c>Histogram&lt;T&gt;</c>, <c>Gauge&lt;T&gt;</c>: each value is a point.</item>
/// <item><c>ObservableGauge&lt;T&gt;</c>, <c>ObservableUpDownCounter&lt;T&gt;</c>: the value read on each sampling interval is a point.</item>
/// <item><c>ObservableCounter&lt;T&gt;</c>: reports a running total; the increase since the previous reading is the point.</item>
/// </list>
/// </remarks>
public sealed class MeterBridge : IDisposable
{
    private readonly MeterListener _listener;
    private readonly MeterBridgeOptions _options;
    private readonly SharedPointWriter _writer;
    private readonly MetricsCollector _collector;
    private readonly ConcurrentDictionary<string, InstrumentKind> _metrics = new(StringComparer.Ordinal);
    private readonly ITimer? _observeTimer;
    private long _measurements;
    private long _refused;
    private long _observableFailures;
    private long _conflicts;
    private string? _lastObservableError;

    // Metric name -> the kind of the bridged instruments that write it and how many of them are live. Instruments
    // are published and completed rarely, so a lock is enough.
    private readonly Dictionary<string, (InstrumentKind Kind, int Instruments)> _claims = new(StringComparer.Ordinal);

    /// <summary>Starts listening to the selected meters; observable instruments are read on the configured interval of <paramref name="time"/>.</summary>
    public MeterBridge(MetricsCollector collector, MeterBridgeOptions options, TimeProvider? time = null)
    {
        ArgumentNullException.ThrowIfNull(collector);
        ArgumentNullException.ThrowIfNull(options);
        if (options.ObservableInterval <= TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(options), options.ObservableInterval, "MeterBridgeOptions.ObservableInterval must be positive.");
        }

        _collector = collector;
        _writer = collector.Writer.Shared;
        _options = options;
        _listener = new MeterListener { InstrumentPublished = OnInstrumentPublished, MeasurementsCompleted = OnMeasurementsCompleted };
        _listener.SetMeasurementEventCallback<double>(static (i, v, tags, state) => ((Bridged)state!).Bridge.OnMeasurement((Bridged)state, v, tags));
        _listener.SetMeasurementEventCallback<float>(static (i, v, tags, state) => ((Bridged)state!).Bridge.OnMeasurement((Bridged)state, v, tags));
        _listener.SetMeasurementEventCallback<long>(static (i, v, tags, state) => ((Bridged)state!).Bridge.OnMeasurement((Bridged)state, v, tags));
        _listener.SetMeasurementEventCallback<int>(static (i, v, tags, state) => ((Bridged)state!).Bridge.OnMeasurement((Bridged)state, v, tags));
        _listener.SetMeasurementEventCallback<short>(static (i, v, tags, state) => ((Bridged)state!).Bridge.OnMeasurement((Bridged)state, v, tags));
        _listener.SetMeasurementEventCallback<byte>(static (i, v, tags, state) => ((Bridged)state!).Bridge.OnMeasurement((Bridged)state, v, tags));
        _listener.SetMeasurementEventCallback<decimal>(static (i, v, tags, state) => ((Bridged)state!).Bridge.OnMeasurement((Bridged)state, (double)v, tags));
        _listener.Start();
        TimeProvider clock = time ?? TimeProvider.System;
        _observeTimer = clock.CreateTimer(static s => ((MeterBridge)s!).ObserveOnTimer(), this, options.ObservableInterval, options.ObservableInterval);
    }

    private sealed class Bridged(MeterBridge bridge, string metric, InstrumentKind kind, bool cumulative)
    {
        public MeterBridge Bridge { get; } = bridge;

        public string Metric { get; } = metric;

        public InstrumentKind Kind { get; } = kind;

        /// <summary>Previous running total per tag set, for observable counters.</summary>
        public ConcurrentDictionary<string, double>? Totals { get; } = cumulative ? new(StringComparer.Ordinal) : null;

        /// <summary>Tag keys of an earlier measurement, all valid label names: the same key objects need no check.</summary>
        public string[] ValidKeys { get; set; } = [];
    }

    /// <summary>The engine metrics created from bridged instruments, with what their values mean.</summary>
    public IReadOnlyDictionary<string, InstrumentKind> Metrics => _metrics;

    /// <summary>Measurements received from the bridged instruments.</summary>
    public long Measurements => Interlocked.Read(ref _measurements);

    /// <summary>Measurements refused before reaching the engine (a negative increment of a monotonic counter); the engine counts its own refusals.</summary>
    public long Refused => Interlocked.Read(ref _refused);

    /// <summary>Observable callbacks that threw when the bridge read them on its interval; the other instruments were still read.</summary>
    public long ObservableFailures => Interlocked.Read(ref _observableFailures);

    /// <summary>The message of the last observable callback failure counted in <see cref="ObservableFailures"/>, or null.</summary>
    public string? LastObservableError => Volatile.Read(ref _lastObservableError);

    /// <summary>
    /// Instruments not bridged because their metric name was taken by a bridged instrument of another kind
    /// (names that differ only in characters outside <c>[a-zA-Z0-9_:]</c>, such as <c>a.b</c> and <c>a_b</c>).
    /// </summary>
    public long InstrumentConflicts => Interlocked.Read(ref _conflicts);

    /// <summary>Reads every observable instrument now (also done on the configured interval).</summary>
    public void RecordObservableInstruments() => _listener.RecordObservableInstruments();

    private void ObserveOnTimer()
    {
        try
        {
            _listener.RecordObservableInstruments();
        }
        catch (AggregateException e)
        {
            // The listener reads every instrument and gathers the callbacks' exceptions into one. Escaping a timer
            // callback, it would end the process: an application's faulty callback is counted instead.
            Interlocked.Add(ref _observableFailures, e.InnerExceptions.Count);
            Volatile.Write(ref _lastObservableError, e.InnerExceptions[^1].Message);
        }
    }

    /// <summary>Whether a meter of this name is selected by <paramref name="patterns"/> (exact names, or prefixes ending in <c>*</c>).</summary>
    public static bool IsSelected(string meterName, IEnumerable<string> patterns)
    {
        ArgumentNullException.ThrowIfNull(meterName);
        ArgumentNullException.ThrowIfNull(patterns);
        foreach (string pattern in patterns)
        {
            if (pattern.EndsWith('*') ? meterName.StartsWith(pattern.AsSpan(0, pattern.Length - 1), StringComparison.Ordinal) : meterName == pattern)
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>The engine metric name for an instrument name: characters outside <c>[a-zA-Z0-9_:]</c> become <c>_</c>.</summary>
    public static string ToMetricName(string prefix, string instrumentName)
    {
        ArgumentNullException.ThrowIfNull(instrumentName);
        return Sanitize((prefix ?? string.Empty) + instrumentName, allowColon: true);
    }

    private static string Sanitize(string name, bool allowColon)
    {
        return string.Create(name.Length, (name, allowColon), static (span, state) =>
        {
            for (int i = 0; i < span.Length; i++)
            {
                char c = state.name[i];
                bool ok = char.IsAsciiLetter(c) || c == '_' || (state.allowColon && c == ':') || (i > 0 && char.IsAsciiDigit(c));
                span[i] = ok ? c : '_';
            }
        });
    }

    private void OnInstrumentPublished(Instrument instrument, MeterListener listener)
    {
        if (!IsSelected(instrument.Meter.Name, _options.Meters))
        {
            return;
        }

        string metric = ToMetricName(_options.MetricPrefix, instrument.Name);
        Type definition = instrument.GetType().IsGenericType ? instrument.GetType().GetGenericTypeDefinition() : instrument.GetType();
        (InstrumentKind kind, bool cumulative) = definition.Name switch
        {
            "Counter`1" => (InstrumentKind.Counter, false),
            "ObservableCounter`1" => (InstrumentKind.Counter, true),
            "UpDownCounter`1" => (InstrumentKind.UpDownCounter, false),
            "Histogram`1" => (InstrumentKind.Histogram, false),
            _ => (InstrumentKind.Gauge, false),
        };
        lock (_claims)
        {
            if (_claims.TryGetValue(metric, out (InstrumentKind Kind, int Instruments) claim) && claim.Kind != kind)
            {
                // Two instruments whose names sanitise alike would mix a counter's increments with a gauge's levels
                // in one metric: the first keeps the name.
                Interlocked.Increment(ref _conflicts);
                return;
            }

            _claims[metric] = (kind, claim.Instruments + 1);
        }

        _metrics[metric] = kind;
        listener.EnableMeasurementEvents(instrument, new Bridged(this, metric, kind, cumulative));
    }

    private void OnMeasurementsCompleted(Instrument instrument, object? state)
    {
        if (state is not Bridged bridged)
        {
            return;
        }

        lock (_claims)
        {
            if (_claims.TryGetValue(bridged.Metric, out (InstrumentKind Kind, int Instruments) claim))
            {
                if (claim.Instruments <= 1)
                {
                    _claims.Remove(bridged.Metric);
                }
                else
                {
                    _claims[bridged.Metric] = (claim.Kind, claim.Instruments - 1);
                }
            }
        }
    }

    private void OnMeasurement(Bridged target, double value, ReadOnlySpan<KeyValuePair<string, object?>> tags)
    {
        Interlocked.Increment(ref _measurements);
        if (target.Totals is not null)
        {
            // Observable counters report a running total: the point is the increase since the last reading.
            string key = TagKey(tags);
            double previous = target.Totals.TryGetValue(key, out double p) ? p : 0;
            target.Totals[key] = value;
            value -= previous;
            if (value < 0)
            {
                // The total went down: the counter restarted, and its new total is the increase.
                value += previous;
            }
        }
        else if (target.Kind == InstrumentKind.Counter && value < 0)
        {
            Interlocked.Increment(ref _refused);
            _collector.CountRejected(RejectReason.NegativeCounterIncrement);
            return;
        }

        // PERF: the label set is built on the stack: no thread-static read (a call into the C library here)
        // and no GC write barrier per reference, as stores into a heap array have. Up to four tags are stored at
        // constant positions of the local, with plain stores; stored through a span (which could point into the
        // heap) each reference took a checked write barrier call (docs/benchmarks.md, "Session 9"). More tags go
        // through a span: the local's rest, or the thread's scratch array beyond its length.
        LabelBuffer buffer = default;
        string[] validKeys = target.ValidKeys;
        bool keysKnown = validKeys.Length == tags.Length;
        scoped Span<Label> labels;
        if (tags.Length <= 4)
        {
            switch (tags.Length)
            {
                case 4:
                    buffer[3] = ToLabel(tags, validKeys, 3, ref keysKnown);
                    goto case 3;
                case 3:
                    buffer[2] = ToLabel(tags, validKeys, 2, ref keysKnown);
                    goto case 2;
                case 2:
                    buffer[1] = ToLabel(tags, validKeys, 1, ref keysKnown);
                    goto case 1;
                case 1:
                    buffer[0] = ToLabel(tags, validKeys, 0, ref keysKnown);
                    break;
            }

            labels = ((Span<Label>)buffer)[..tags.Length];
        }
        else
        {
            labels = tags.Length <= LabelBuffer.Length ? ((Span<Label>)buffer)[..tags.Length] : LabelScratch.Rent(tags.Length);
            for (int i = 0; i < tags.Length; i++)
            {
                labels[i] = ToLabel(tags, validKeys, i, ref keysKnown);
            }
        }

        bool sorted = true;
        for (int i = 1; i < labels.Length; i++)
        {
            sorted &= string.CompareOrdinal(labels[i - 1].Name, labels[i].Name) < 0;
        }

        if (!keysKnown && tags.Length > 0)
        {
            RememberKeys(target, tags);
        }

        if (!sorted)
        {
            // PERF: in the registry's order of names, a call site passing the same string objects is
            // answered from their identity (see the registry); sorting three or four labels costs little.
            SortByName(labels);
        }

        _writer.Write(target.Metric, labels, value);
        if (labels.Length > LabelBuffer.Length)
        {
            labels.Clear();
        }
    }

    /// <summary>Tag <paramref name="i"/> as a label; clears <paramref name="keysKnown"/> when its key is not the one checked before.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Label ToLabel(ReadOnlySpan<KeyValuePair<string, object?>> tags, string[] validKeys, int i, ref bool keysKnown)
    {
        // A null key (possible through KeyValuePair's default or a null-forgiving caller) becomes an empty name,
        // which the engine refuses as an invalid label name and counts: nothing at a call site throws.
        string key = tags[i].Key ?? string.Empty;
        // PERF: the keys of a call site are the same objects every time: checked once, not per call.
        // Keys usually are valid label names already; only the others cost a new string.
        if (!(keysKnown && ReferenceEquals(validKeys[i], key)))
        {
            keysKnown = false;
            if (!PrometheusNames.IsValidLabelName(key))
            {
                key = Sanitize(key, allowColon: false);
            }
        }

        return new Label(key, ToLabelValue(tags[i].Value));
    }

    private static void RememberKeys(Bridged target, ReadOnlySpan<KeyValuePair<string, object?>> tags)
    {
        var keys = new string[tags.Length];
        for (int i = 0; i < keys.Length; i++)
        {
            if (!PrometheusNames.IsValidLabelName(tags[i].Key))
            {
                return;
            }

            keys[i] = tags[i].Key;
        }

        target.ValidKeys = keys;
    }

    private static void SortByName(Span<Label> labels)
    {
        for (int i = 1; i < labels.Length; i++)
        {
            Label current = labels[i];
            int j = i - 1;
            while (j >= 0 && string.CompareOrdinal(labels[j].Name, current.Name) > 0)
            {
                labels[j + 1] = labels[j];
                j--;
            }

            labels[j + 1] = current;
        }
    }

    /// <summary>A tag's value as a label value. PERF: a string (the usual tag value) is taken as is, inline.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static string ToLabelValue(object? value) => value as string ?? FormatLabelValue(value);

    private static string FormatLabelValue(object? value) => value switch
    {
        null => string.Empty,
        string s => s,
        IFormattable f => f.ToString(null, CultureInfo.InvariantCulture),
        _ => value.ToString() ?? string.Empty,
    };

    private static string TagKey(ReadOnlySpan<KeyValuePair<string, object?>> tags)
    {
        var parts = new string[tags.Length];
        for (int i = 0; i < tags.Length; i++)
        {
            parts[i] = tags[i].Key + "=" + ToLabelValue(tags[i].Value);
        }

        Array.Sort(parts, StringComparer.Ordinal);
        return string.Join('\u0001', parts);
    }

    /// <summary>Stops listening and sampling.</summary>
    public void Dispose()
    {
        _observeTimer?.Dispose();
        _listener.Dispose();
    }
}
