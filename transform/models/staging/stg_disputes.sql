-- One row per dispute (chargeback or inquiry), the disputed amount positive.
select
    {{ record_key('d."companyId"', 'd."connectionId"', 'd.id') }} as dispute_key,
    d."companyId" as company_id,
    d."connectionId" as connection_id,
    d.id as dispute_id,
    d.status,
    d.reason,
    {{ currency('d.currency') }} as currency,
    abs({{ amount('d."totalAmount"') }}) as disputed_amount,
    {{ real_date('d."createdDate"') }} as created_at,
    {{ real_date('d."dueDate"') }} as due_at,
    d."modifiedDate" as modified_at
from {{ source('codat', 'disputes') }} as d
