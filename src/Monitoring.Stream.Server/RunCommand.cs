using System.Collections;
using System.CommandLine;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Monitoring.Stream.Hosting.DependencyInjection;
using Monitoring.Stream.Kafka;
using Monitoring.Stream.Kafka.Sink;
using Monitoring.Stream.Kafka.Source;
using Monitoring.Stream.Pipeline;
using Monitoring.Stream.Prometheus;
using Monitoring.Stream.Server.Service;
using Monitoring.Stream.Sinks;
using Monitoring.Stream.Store;

namespace Monitoring.Stream.Server;

/// <summary><c>monitoring-stream run</c>: the engine as a long-running service with its HTTP API (docs/http-api.md).</summary>
internal static class RunCommand
{
    /// <summary>Prefix of the environment variables read into the <c>MonitoringStream</c> section.</summary>
    public const string EnvironmentPrefix = "MONITORING_STREAM__";

    /// <summary>The <c>run</c> command and its flags; each flag overrides its setting in <c>MonitoringStream:Server</c>.</summary>
    public static Command Create()
    {
        var urls = new Option<string>("--urls") { Description = "where to listen, ';'-separated (Server:Urls) [default: http://127.0.0.1:9400; port 0 picks a free port]" };
        var dataDir = new Option<string>("--data-dir") { Description = "data folder; the Arrow store writes to <data-dir>/windows (Server:DataDirectory) [default: ./data]" };
        var token = new Option<string>("--api-token") { Description = "bearer token required on /api/* and /metrics; required beyond loopback (Server:ApiToken)" };
        var demoLoad = new Option<bool>("--demo-load") { Description = "run a small synthetic load inside the service (Server:DemoLoad)" };
        var config = new Option<string>("--config") { Description = "a JSON settings file read after appsettings.json (below environment variables and flags)" };
        var remoteWrite = new Option<string>("--remote-write-url") { Description = "also send every window by Prometheus remote write to this URL (Server:RemoteWriteUrl)" };
        var kafkaBootstrap = new Option<string>("--kafka-bootstrap") { Description = "Kafka bootstrap servers: consume points, produce aggregates (Server:Kafka:BootstrapServers)" };
        var kafkaMock = new Option<bool>("--kafka-mock") { Description = "start librdkafka's mock cluster in this process and use it (Server:Kafka:Mock)" };
        var pointsTopic = new Option<string>("--points-topic") { Description = "topic of point messages (Server:Kafka:PointsTopic) [default: metrics.points]" };
        var aggregatesTopic = new Option<string>("--aggregates-topic") { Description = "topic of Arrow window aggregates (Server:Kafka:AggregatesTopic) [default: metrics.aggregates]" };
        var group = new Option<string>("--group") { Description = "Kafka consumer group (Server:Kafka:GroupId) [default: monitoring-stream]" };
        var command = new Command("run", "run the engine as a service: HTTP API (ingest, statistics, dashboard, /metrics, health), local Arrow store, optional Kafka and remote write; SIGINT/SIGTERM stop it cleanly")
        {
            urls, dataDir, token, demoLoad, config, remoteWrite, kafkaBootstrap, kafkaMock, pointsTopic, aggregatesTopic, group,
        };
        command.SetAction(async (parse, _) =>
        {
            var flags = new Dictionary<string, string?>(StringComparer.OrdinalIgnoreCase);
            void Flag<T>(Option<T> option, string key)
            {
                if (parse.GetResult(option) is { Implicit: false })
                {
                    flags[$"{ServerSettings.SectionName}:{key}"] = Convert.ToString(parse.GetValue(option), System.Globalization.CultureInfo.InvariantCulture);
                }
            }

            Flag(urls, "Urls");
            Flag(dataDir, "DataDirectory");
            Flag(token, "ApiToken");
            Flag(demoLoad, "DemoLoad");
            Flag(remoteWrite, "RemoteWriteUrl");
            Flag(kafkaBootstrap, "Kafka:BootstrapServers");
            Flag(kafkaMock, "Kafka:Mock");
            Flag(pointsTopic, "Kafka:PointsTopic");
            Flag(aggregatesTopic, "Kafka:AggregatesTopic");
            Flag(group, "Kafka:GroupId");
            return await RunAsync(flags, parse.GetValue(config)).ConfigureAwait(false);
        });
        return command;
    }

    /// <summary>Builds the configuration (appsettings.json &lt; --config file &lt; MONITORING_STREAM__ variables &lt; flags), starts, waits for a signal, stops.</summary>
    public static async Task<int> RunAsync(IReadOnlyDictionary<string, string?> flags, string? configFile)
    {
        WebApplicationBuilder builder = WebApplication.CreateBuilder(new WebApplicationOptions
        {
            Args = [],
            WebRootPath = Path.Combine(AppContext.BaseDirectory, "wwwroot"),
        });
        if (configFile is not null)
        {
            if (!File.Exists(configFile))
            {
                return Fail($"--config: no file at '{Path.GetFullPath(configFile)}'");
            }

            builder.Configuration.AddJsonFile(Path.GetFullPath(configFile), optional: false, reloadOnChange: false);
        }

        builder.Configuration.AddInMemoryCollection(EnvironmentSettings());
        builder.Configuration.AddInMemoryCollection(flags);

        var settings = new ServerSettings();
        try
        {
            builder.Configuration.GetSection(ServerSettings.SectionName).Bind(settings);
        }
        catch (InvalidOperationException e)
        {
            return Fail("configuration: " + e.Message);
        }

        IReadOnlyList<string> problems = settings.Validate();
        if (problems.Count > 0)
        {
            return Fail("configuration:\n  " + string.Join("\n  ", problems));
        }

        KafkaMockCluster? mock = null;
        try
        {
            if (settings.Kafka.Mock)
            {
                mock = new KafkaMockCluster();
                settings.Kafka.BootstrapServers = mock.BootstrapServers;
                // The mock creates topics on first use; a consumer that subscribes before that would wait for a metadata refresh.
                foreach (string? topic in new[] { settings.Kafka.PointsTopic, settings.Kafka.AggregatesTopic })
                {
                    if (!string.IsNullOrWhiteSpace(topic))
                    {
                        mock.EnsureTopic(topic);
                    }
                }

                Console.WriteLine($"kafka mock cluster: {mock.BootstrapServers} (librdkafka, in this process; produce with: monitoring-stream produce --kafka-bootstrap {mock.BootstrapServers})");
            }

            return await RunServiceAsync(builder, settings).ConfigureAwait(false);
        }
        finally
        {
            mock?.Dispose();
        }
    }

    private static async Task<int> RunServiceAsync(WebApplicationBuilder builder, ServerSettings settings)
    {
        ConfigureServices(builder, settings);
        WebApplication app;
        try
        {
            app = builder.Build();
        }
        catch (InvalidOperationException e)
        {
            return Fail("configuration: " + e.Message);
        }

        await using (app.ConfigureAwait(false))
        {
            try
            {
                // The engine's options are bound and validated here, before anything resolves them.
                _ = app.Services.GetRequiredService<IOptions<MonitoringStreamOptions>>().Value;
            }
            catch (OptionsValidationException e)
            {
                return Fail("configuration:\n  " + string.Join("\n  ", e.Failures));
            }
            catch (InvalidOperationException e)
            {
                // A value that does not convert (e.g. "abc" for a TimeSpan): the message names the setting.
                return Fail("configuration: " + e.Message);
            }

            try
            {
                ServiceApp.Configure(app, settings);
                await app.StartAsync().ConfigureAwait(false);
            }
            catch (OptionsValidationException e)
            {
                return Fail("configuration:\n  " + string.Join("\n  ", e.Failures));
            }
            catch (IOException e)
            {
                // Binding the address and creating the data folder both end here: name both.
                return Fail($"cannot start (listening on {settings.Urls}, data folder {Path.GetFullPath(settings.DataDirectory)}): {e.Message}");
            }

            ServiceApp.MarkReady(app);
            MonitoringStreamOptions engine = app.Services.GetRequiredService<IOptions<MonitoringStreamOptions>>().Value;
            ICollection<string> addresses = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()?.Addresses ?? [];
            Console.WriteLine($"monitoring-stream: listening on {string.Join(", ", addresses)}");
            Console.WriteLine($"  store: {(engine.ArrowStoreEnabled ? Path.GetFullPath(engine.ArrowStore.Directory) : "off")}; windows {engine.Pipeline.WindowSize.TotalSeconds:0.###} s, lateness {engine.Pipeline.AllowedLateness.TotalSeconds:0.###} s, {engine.Pipeline.ShardCount} shards" +
                $"{(settings.DemoLoad ? $"; demo load {settings.DemoLoadPointsPerSecond} points/s" : string.Empty)}{(settings.ApiToken is null ? string.Empty : "; bearer token required")}");
            if (engine.ArrowStoreEnabled && app.Services.GetService<ArrowFileStore>() is ArrowFileStore store)
            {
                foreach (string line in StoreReport.StartupLines(store))
                {
                    Console.WriteLine(line);
                }
            }

            if (settings.Kafka.Enabled)
            {
                Console.WriteLine($"  kafka: {settings.Kafka.BootstrapServers}, points from '{settings.Kafka.PointsTopic}' (group {settings.Kafka.GroupId}), aggregates to '{settings.Kafka.AggregatesTopic}'");
            }

            if (settings.RemoteWriteUrl is not null)
            {
                Console.WriteLine($"  remote write: {settings.RemoteWriteUrl}");
            }

            string first = addresses.FirstOrDefault() ?? settings.UrlList[0];
            Console.WriteLine($"  try: curl {first}/api/v1/metrics   (stop with Ctrl+C)");

            var stopping = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            using (app.Lifetime.ApplicationStopping.Register(() => stopping.TrySetResult()))
            {
                await stopping.Task.ConfigureAwait(false);
            }

            var lifetime = (SignalLifetime)app.Services.GetRequiredService<IHostLifetime>();
            if (settings.StopDrainDelay > TimeSpan.Zero && !lifetime.Abort.IsCancellationRequested)
            {
                // Still serving, but not ready: /health/ready and ingest answer 503 while the load balancer notices.
                Console.WriteLine($"monitoring-stream: draining for {settings.StopDrainDelay.TotalSeconds:0.###} s (/health/ready and ingest answer 503) before the stop; a second signal skips it");
                try
                {
                    await Task.Delay(settings.StopDrainDelay, lifetime.Abort).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    // The second signal: the stop begins now, forced.
                }
            }

            await app.StopAsync(lifetime.Abort).ConfigureAwait(false);
            PipelineMetrics m = app.Services.GetRequiredService<MetricsPipeline>().GetMetrics();
            Console.WriteLine($"monitoring-stream: stopped ({m.State}): offered {m.Offered:N0}, accepted {m.Accepted:N0} = emitted {m.EmittedPoints:N0} + late {m.Late:N0} + open {m.OpenWindowPoints:N0} + queued {m.Queued:N0}; " +
                $"rejected {m.Rejected:N0}, dropped {m.Dropped:N0}; windows {m.WindowsEmitted:N0}; abandoned by sinks {m.Sinks.Sum(s => s.PointsAbandoned):N0} points");
            if (app.Services.GetService<KafkaPointSource>() is { } kafka)
            {
                KafkaSourceMetrics k = kafka.GetMetrics();
                Console.WriteLine($"  kafka source: messages {k.Messages:N0}, points {k.Points:N0} (refused {k.PointsRefused:N0}), dead-lettered {k.DeadLettered.Values.Sum():N0} " +
                    $"(failed writes {k.DeadLetterFailures:N0}); commits {k.Commits:N0} (failed {k.CommitFailures:N0}), cuts {k.Cuts:N0} (timed out {k.CutTimeouts:N0}); " +
                    $"re-read and skipped {k.SkippedMessages:N0} messages; revokes {k.Revocations:N0} (timed out {k.RevokeTimeouts:N0}); pauses {k.Pauses:N0}; consumer errors {k.ConsumerErrors:N0}");
            }

            return 0;
        }
    }

    private static void ConfigureServices(WebApplicationBuilder builder, ServerSettings settings)
    {
        builder.Logging.AddFilter("Microsoft.AspNetCore", LogLevel.Warning);
        builder.Logging.AddFilter("Microsoft.Hosting.Lifetime", LogLevel.Warning);
        builder.WebHost.UseUrls([.. settings.UrlList]);
        builder.WebHost.ConfigureKestrel(k =>
        {
            k.AddServerHeader = false;
            k.Limits.MaxRequestBodySize = settings.MaxRequestBodyBytes;
            k.Limits.MaxRequestHeadersTotalSize = settings.MaxRequestHeadersBytes;
            k.Limits.RequestHeadersTimeout = settings.RequestHeadersTimeout;
            k.Limits.MinRequestBodyDataRate = new MinDataRate(settings.MinRequestBodyBytesPerSecond, settings.RequestBodyGracePeriod);
        });
        builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = TimeSpan.FromSeconds(60));
        builder.Services.AddSingleton<SignalLifetime>();
        builder.Services.AddSingleton<IHostLifetime>(sp => sp.GetRequiredService<SignalLifetime>());
        builder.Services.AddSingleton(settings);
        builder.Services.AddSingleton<ServerMetrics>();
        builder.Services.AddSingleton<IngestService>();
        builder.Services.AddSingleton<MetricCatalog>();
        builder.Services.AddSingleton<IWindowSink>(sp => sp.GetRequiredService<MetricCatalog>());
        builder.Services.AddProblemDetails();
        builder.Services.AddOpenApi();

        bool storeDirectorySet = builder.Configuration[$"{MonitoringStreamOptions.SectionName}:ArrowStore:Directory"] is not null;
        builder.Services.AddMonitoringStream(o =>
        {
            if (!storeDirectorySet)
            {
                o.ArrowStore.Directory = Path.Combine(settings.DataDirectory, "windows");
            }
        });
        builder.Services.AddHealthChecks().AddCheck<ReadinessCheck>("service", tags: ["ready"]);
        builder.Services.AddSingleton<ReadinessCheck>();

        // Sinks are registered as instances: the pipeline completes and disposes them, the container must not again.
        if (settings.RemoteWriteUrl is not null)
        {
            var remoteWrite = new RemoteWriteSink(RemoteWriteOptions(settings));
            builder.Services.AddSingleton(remoteWrite);
            builder.Services.AddSingleton<IWindowSink>(remoteWrite);
        }

        if (settings.Kafka.Enabled)
        {
            string bootstrap = settings.Kafka.BootstrapServers!;
            KafkaPointSource? source = null;
            if (!string.IsNullOrWhiteSpace(settings.Kafka.AggregatesTopic))
            {
                // Each aggregate message names the offsets of the points topic its points can come from (docs/kafka.md).
                var sinkOptions = new KafkaWindowSinkOptions { BootstrapServers = bootstrap, Topic = settings.Kafka.AggregatesTopic, SourceOffsets = batch => source?.DescribeSourceOffsets(batch) };
                foreach ((string key, string value) in settings.Kafka.ClientSettings)
                {
                    sinkOptions.ClientSettings[key] = value;
                }

                builder.Services.AddSingleton<IWindowSink>(new KafkaWindowSink(sinkOptions));
            }

            if (!string.IsNullOrWhiteSpace(settings.Kafka.PointsTopic))
            {
                var sourceOptions = new KafkaPointSourceOptions
                {
                    BootstrapServers = bootstrap,
                    Topic = settings.Kafka.PointsTopic,
                    GroupId = settings.Kafka.GroupId,
                    DeadLetterTopic = settings.Kafka.DeadLetterTopic ?? settings.Kafka.PointsTopic + ".dlq",
                    SegmentInterval = settings.Kafka.SegmentInterval,
                };
                foreach ((string key, string value) in settings.Kafka.ClientSettings)
                {
                    sourceOptions.ClientSettings[key] = value;
                }

                builder.Services.AddSingleton(sp => source = new KafkaPointSource(sp.GetRequiredService<MetricsPipeline>(), sourceOptions));
                builder.Services.AddHostedService<KafkaSourceService>();
            }
        }

        if (settings.DemoLoad)
        {
            builder.Services.AddHostedService<DemoLoadService>();
        }
    }

    /// <summary>The remote-write sink's options from the service's settings (<c>Server:RemoteWriteUrl</c>, <c>Server:RemoteWriteTimeout</c>).</summary>
    internal static RemoteWriteSinkOptions RemoteWriteOptions(ServerSettings settings) => new()
    {
        Endpoint = new Uri(settings.RemoteWriteUrl ?? throw new ArgumentException("No remote-write URL is set.", nameof(settings))),
        Timeout = settings.RemoteWriteTimeout,
    };

    /// <summary>Environment variables <c>MONITORING_STREAM__A__B=v</c> as <c>MonitoringStream:A:B=v</c>.</summary>
    internal static Dictionary<string, string?> EnvironmentSettings()
    {
        var settings = new Dictionary<string, string?>(StringComparer.OrdinalIgnoreCase);
        foreach (DictionaryEntry entry in Environment.GetEnvironmentVariables())
        {
            if (entry.Key is string key && key.StartsWith(EnvironmentPrefix, StringComparison.OrdinalIgnoreCase) && key.Length > EnvironmentPrefix.Length)
            {
                settings[MonitoringStreamOptions.SectionName + ":" + key[EnvironmentPrefix.Length..].Replace("__", ":", StringComparison.Ordinal)] = entry.Value as string;
            }
        }

        return settings;
    }

    private static int Fail(string message)
    {
        Console.Error.WriteLine("monitoring-stream run: " + message);
        return 2;
    }
}
