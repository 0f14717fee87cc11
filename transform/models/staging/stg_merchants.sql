-- One row per commerce connection of a company: who the merchant is and on which platform.
select
    k."companyId" as company_id,
    k.id as connection_id,
    c.name as company_name,
    k."platformName" as platform,
    k.status as connection_status
from {{ source('codat', 'connections') }} as k
left join {{ source('codat', 'companies') }} as c on c.id = k."companyId"
where k."sourceType" = 'Commerce'
