using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Options;
using Monitoring.Stream.Hosting.Dashboard;
using Monitoring.Stream.Hosting.Health;
using Monitoring.Stream.Hosting.Http;
using Monitoring.Stream.Hosting.Instruments;
using Monitoring.Stream.Hosting.Monitors;
using Monitoring.Stream.Hosting.Queries;
using Monitoring.Stream.Pipeline;
using Monitoring.Stream.Sinks;
using Monitoring.Stream.Store;

namespace Monitoring.Stream.Hosting.DependencyInjection;

/// <summary>Registers Monitoring.Stream in a generic host or an ASP.NET Core app.</summary>
public static class MonitoringStreamServiceCollectionExtensions
{
    /// <summary>The name of the engine's own health check.</summary>
    public const string EngineHealthCheckName = "monitoring-stream-engine";

    /// <summary>
    /// Adds the engine (pipeline, in-memory index, Arrow store, instruments, queries, health, dashboard data)
    /// with options bound from the <c>MonitoringStream</c> configuration section when the host has one,
    /// then <paramref name="configure"/>; options are validated at start-up. Further
    /// <see cref="IWindowSink"/> registrations become sinks too.
    /// </summary>
    public static IServiceCollection AddMonitoringStream(this IServiceCollection services, Action<MonitoringStreamOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(services);
        OptionsBuilder<MonitoringStreamOptions> options = services.AddOptions<MonitoringStreamOptions>();
        options.Configure<IServiceProvider>((o, sp) =>
        {
            if (sp.GetService<IConfiguration>() is IConfiguration configuration)
            {
                configuration.GetSection(MonitoringStreamOptions.SectionName).Bind(o);
            }
        });
        if (configure is not null)
        {
            options.Configure(configure);
        }

        options.ValidateOnStart();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<MonitoringStreamOptions>, MonitoringStreamOptionsValidator>());
        services.TryAddSingleton(TimeProvider.System);
        services.AddMetrics();
        services.TryAddSingleton(sp => new RecentWindowIndex(Options(sp).RecentWindows));
        services.TryAddSingleton(sp => Options(sp).ArrowStoreEnabled ? new ArrowFileStore(Options(sp).ArrowStore, sp.GetRequiredService<TimeProvider>()) : null!);
        services.TryAddSingleton(sp =>
        {
            MonitoringStreamOptions o = Options(sp);
            o.Pipeline.TimeProvider = sp.GetRequiredService<TimeProvider>();
            var sinks = new List<IWindowSink> { sp.GetRequiredService<RecentWindowIndex>() };
            if (o.ArrowStoreEnabled)
            {
                sinks.Add(sp.GetRequiredService<ArrowFileStore>());
            }

            sinks.AddRange(sp.GetServices<IWindowSink>());
            return new MetricsPipeline(o.Pipeline, sinks, o.Sinks);
        });
        services.TryAddSingleton(sp => new MetricsCollector(sp.GetRequiredService<MetricsPipeline>(), Options(sp).Source));
        services.TryAddSingleton(sp => Options(sp).ArrowStoreEnabled
            ? new MetricStatisticsService(sp.GetRequiredService<RecentWindowIndex>(), sp.GetRequiredService<ArrowFileStore>(), sp.GetRequiredService<TimeProvider>())
            : new MetricStatisticsService(sp.GetRequiredService<RecentWindowIndex>(), arrowStoreDirectory: null, sp.GetRequiredService<TimeProvider>()));
        services.TryAddSingleton(sp => new HealthMetricsPublisher(sp.GetRequiredService<MetricsCollector>()));
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IHealthCheckPublisher, HealthMetricsPublisher>(sp => sp.GetRequiredService<HealthMetricsPublisher>()));
        services.TryAddSingleton(sp => new EngineHealthCheck(sp.GetRequiredService<MetricsPipeline>(), Options(sp).Health, sp.GetRequiredService<TimeProvider>()));
        services.TryAddSingleton(sp => new EngineSelfMetrics(sp.GetRequiredService<MetricsCollector>(), sp.GetService<System.Diagnostics.Metrics.IMeterFactory>()));
        services.TryAddSingleton(sp => new DocumentMetrics(sp.GetRequiredService<MetricsCollector>()));
        services.TryAddSingleton(sp => Options(sp).Http);
        services.TryAddSingleton(sp => new DashboardDataService(sp.GetRequiredService<MetricStatisticsService>(), sp.GetRequiredService<MetricsPipeline>(),
            sp.GetService<HealthCheckService>(), sp.GetRequiredService<HealthMetricsPublisher>(), sp.GetRequiredService<TimeProvider>(), sp.GetRequiredService<EngineHealthCheck>()));
        services.AddHealthChecks().Add(new HealthCheckRegistration(EngineHealthCheckName, sp => sp.GetRequiredService<EngineHealthCheck>(), failureStatus: null, tags: ["monitoring-stream"]));
        // A check named like the aggregate would share its label in monitoring_health_status{check} (two values for one
        // series, and a scrape Prometheus refuses as a duplicate sample): refused at start-up, with the name.
        services.AddOptions<HealthCheckServiceOptions>()
            .Validate(
                o => !o.Registrations.Any(r => string.Equals(r.Name, HealthMetricsPublisher.OverallCheck, StringComparison.Ordinal)),
                $"A health check is registered under the name '{HealthMetricsPublisher.OverallCheck}', which monitoring_health_status{{check}} " +
                "keeps for the aggregate status of all checks; register it under another name.")
            .ValidateOnStart();
        services.AddHostedService<MonitoringStreamHostedService>();
        return services;
    }

    /// <summary>Adds Monitoring.Stream with options bound from <paramref name="section"/> (instead of the default section), then <paramref name="configure"/>.</summary>
    public static IServiceCollection AddMonitoringStream(this IServiceCollection services, IConfiguration section, Action<MonitoringStreamOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(section);
        return services.AddMonitoringStream(o =>
        {
            section.Bind(o);
            configure?.Invoke(o);
        });
    }

    private static MonitoringStreamOptions Options(IServiceProvider sp) => sp.GetRequiredService<IOptions<MonitoringStreamOptions>>().Value;
}
