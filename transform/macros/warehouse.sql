{#- The few places where DuckDB and PostgreSQL differ; every model is written once over these. -#}

{#- An amount as an exact decimal: Codat's amounts arrive as numeric (PostgreSQL), double
    (target-duckdb) or JSON text (nested values). -#}
{% macro amount(expression) -%}
    cast({{ expression }} as decimal(38, 6))
{%- endmacro %}

{#- A key or text field of a JSON object, as text. -#}
{% macro json_text(object, key) -%}
    ({{ object }} ->> '{{ key }}')
{%- endmacro %}

{#- A JSON array column as one JSON array value: target-postgres loads arrays of objects as
    jsonb[], target-duckdb as JSON. -#}
{% macro json_array(column) -%}
    {{ return(adapter.dispatch('json_array', 'codat_commerce')(column)) }}
{%- endmacro %}

{% macro default__json_array(column) -%}
    {{ column }}
{%- endmacro %}

{% macro postgres__json_array(column) -%}
    to_jsonb({{ column }})
{%- endmacro %}

{#- A lateral join giving one row per object in a JSON array: `alias.value` (the object, JSON)
    and `alias.position` (its place in the array: 1, 2, ...). A null or empty array, a value that
    is no array, and elements that are no object (null) give no row. -#}
{% macro json_elements(array, alias) -%}
    {{ return(adapter.dispatch('json_elements', 'codat_commerce')(array, alias)) }}
{%- endmacro %}

{% macro duckdb__json_elements(array, alias) -%}
    cross join lateral (
        select * from (
            select unnest(elements) as value, generate_subscripts(elements, 1) as position
            from (select case when json_type({{ array }}) = 'ARRAY' then cast({{ array }} as json[]) end
                      as elements)
        ) where json_type(value) = 'OBJECT'
    ) as {{ alias }}
{%- endmacro %}

{% macro postgres__json_elements(array, alias) -%}
    cross join lateral (
        select * from jsonb_array_elements(
            case when jsonb_typeof({{ array }}) = 'array' then {{ array }} else '[]'::jsonb end
        ) with ordinality as elements(value, position)
        where jsonb_typeof(elements.value) = 'object'
    ) as {{ alias }}
{%- endmacro %}

{#- The calendar month (UTC) of a timestamp, as a date (the 1st). The tap writes every date in
    UTC, and both loaders store it as a timestamp without time zone. -#}
{% macro utc_month(timestamp) -%}
    cast(date_trunc('month', {{ timestamp }}) as date)
{%- endmacro %}

{#- An ISO 4217 code as Codat means it: upper case; missing or blank is XXX (unknown). -#}
{% macro currency(expression) -%}
    coalesce(upper({{ clean_text(expression) }}), 'XXX')
{%- endmacro %}

{#- Codat's 0001-01-01 "no date" sentinel as null. -#}
{% macro real_date(timestamp) -%}
    case when {{ timestamp }} >= cast('1900-01-01' as timestamp) then {{ timestamp }} end
{%- endmacro %}

{#- Ratio ``numerator / denominator`` rounded half away from zero to ``places`` decimals, the same
    on both warehouses (DuckDB divides decimals as doubles: its quotient is first made a decimal
    of 10 places, which takes off the double's error). -#}
{% macro rounded_ratio(numerator, denominator, places) -%}
    {{ return(adapter.dispatch('rounded_ratio', 'codat_commerce')(numerator, denominator, places)) }}
{%- endmacro %}

{% macro default__rounded_ratio(numerator, denominator, places) -%}
    cast(round({{ numerator }} / {{ denominator }}, {{ places }}) as decimal(38, {{ places }}))
{%- endmacro %}

{% macro duckdb__rounded_ratio(numerator, denominator, places) -%}
    cast(round(cast({{ numerator }} / {{ denominator }} as decimal(38, 10)), {{ places }}) as decimal(38, {{ places }}))
{%- endmacro %}

{#- Text with the spaces around it taken off; blank as null. -#}
{% macro clean_text(expression) -%}
    nullif(trim({{ expression }}), '')
{%- endmacro %}

{#- The key of a commerce record as one text value, for relationships tests: Codat's company and
    connection ids are UUIDs, so "|" cannot be ambiguous. -#}
{% macro record_key(company_id, connection_id, id) -%}
    ({{ company_id }} || '|' || {{ connection_id }} || '|' || {{ id }})
{%- endmacro %}

{#- The key columns of an order, and of every row unnested from one. -#}
{% macro order_key_columns(alias) -%}
    {{ record_key(alias ~ '."companyId"', alias ~ '."connectionId"', alias ~ '.id') }} as order_key,
    {{ alias }}."companyId" as company_id,
    {{ alias }}."connectionId" as connection_id,
    {{ alias }}.id as order_id
{%- endmacro %}
